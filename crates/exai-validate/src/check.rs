//! What a case reports when it does not pass, and the small helpers its checks use.

/// Why a case did not pass.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// A check failed: the system did something other than it should.
    Fail(String),
    /// The case cannot run here (no provider for it, a tool switched off, no git…).
    Skip(String),
    /// The case could not complete: transport failure, no answer in time, fixture trouble.
    Error(String),
}

impl Problem {
    pub fn message(&self) -> &str {
        match self {
            Problem::Fail(m) | Problem::Skip(m) | Problem::Error(m) => m,
        }
    }
}

pub type Outcome = Result<(), Problem>;

/// Fail the case with a formatted message unless the condition holds.
macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::check::Problem::Fail(format!($($msg)+)));
        }
    };
}
pub(crate) use check;

/// At most `max` characters of `text`, with an ellipsis when cut.
pub fn clip(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

/// Fail unless `text` contains `needle`, quoting what it said instead.
pub fn contains(what: &str, text: &str, needle: &str) -> Outcome {
    if text.contains(needle) {
        Ok(())
    } else {
        Err(Problem::Fail(format!(
            "{what} should mention {needle:?} but says: {}",
            clip(text, 300)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_on_characters() {
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("ok", 5), "ok");
    }

    #[test]
    fn check_fails_with_the_message() {
        fn f(n: u32) -> Outcome {
            check!(n > 2, "{n} is too small");
            Ok(())
        }
        assert_eq!(f(1), Err(Problem::Fail("1 is too small".into())));
        assert_eq!(f(3), Ok(()));
        assert!(contains("answer", "abc", "b").is_ok());
        assert!(
            matches!(contains("answer", "abc", "x"), Err(Problem::Fail(m)) if m.contains("\"x\""))
        );
    }
}
