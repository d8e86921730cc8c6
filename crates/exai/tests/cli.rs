#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The `exai` command as a user runs it: configuration errors, redaction, and the configuration
//! table of docs/CONFIGURATION.md against the code.

use std::path::Path;
use std::process::{Command, Output};

fn exai(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exai"));
    cmd.args(args)
        .env_clear()
        .env("EXAI_HOME", home)
        .current_dir(home);
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run exai")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn configuration_table_matches_the_code() {
    let home = tempfile::tempdir().unwrap();
    let out = exai(home.path(), &["config", "docs"], &[]);
    assert!(out.status.success());
    let generated = text(&out.stdout);
    // The crate's directory when the test runs, not where it was compiled (a shared build
    // directory may have compiled it in another clone).
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf(),
        Into::into,
    );
    let doc = std::fs::read_to_string(dir.join("../../docs/CONFIGURATION.md")).unwrap();
    let start = doc
        .find("<!-- config-table:start -->\n")
        .expect("start marker")
        + "<!-- config-table:start -->\n".len();
    let end = doc.find("<!-- config-table:end -->").expect("end marker");
    assert_eq!(
        &doc[start..end],
        generated,
        "docs/CONFIGURATION.md's table is stale: replace it with the output of `exai config docs`"
    );
}

#[test]
fn config_check_prints_the_hierarchy() {
    let home = tempfile::tempdir().unwrap();
    let out = exai(
        home.path(),
        &["config", "check"],
        &[("WORKFLOW_TOOL_TIMEOUT_SECS", "60")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for line in [
        "workflow tool T      60.0 s",
        "daemon               90.0 s",
        "shim                120.0 s",
        "client              150.0 s",
    ] {
        assert!(stdout.contains(line), "{line:?} missing in:\n{stdout}");
    }
}

#[test]
fn invalid_hierarchy_exits_2_with_the_reason() {
    let home = tempfile::tempdir().unwrap();
    let out = exai(
        home.path(),
        &["config", "check"],
        &[("WORKFLOW_TOOL_TIMEOUT_SECS", "2000")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("exceeds 3600 s")
            && err.contains("WORKFLOW_TOOL_TIMEOUT_SECS")
            && err.contains("1440"),
        "{err}"
    );

    let out = exai(
        home.path(),
        &["config", "check"],
        &[("EXAI_TIMEOUTS_MODEL_MULTIPLIERS", "slow=40")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("timeouts.model_multipliers"));
}

#[test]
fn unknown_key_in_the_config_file_exits_2() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("custom.toml");
    std::fs::write(&file, "[timeouts]\nworkflow_tool_sec = 50\n").unwrap();
    let out = exai(
        home.path(),
        &["--config", file.to_str().unwrap(), "config", "check"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("timeouts.workflow_tool_sec")
            && err.contains("custom.toml")
            && err.contains("did you mean `timeouts.workflow_tool_secs`"),
        "{err}"
    );
}

#[test]
fn dotenv_in_the_data_directory_is_read_and_environment_wins() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join(".env"),
        "WORKFLOW_TOOL_TIMEOUT_SECS=50\nSIMPLE_TOOL_TIMEOUT_SECS=20\nOTHER_APP=1\n",
    )
    .unwrap();
    let out = exai(
        home.path(),
        &["config", "show", "--json"],
        &[("SIMPLE_TOOL_TIMEOUT_SECS", "10")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["timeouts.workflow_tool_secs"]["value"], "50.0");
    assert!(
        v["timeouts.workflow_tool_secs"]["source"]
            .as_str()
            .unwrap()
            .contains(".env")
    );
    assert_eq!(v["timeouts.simple_tool_secs"]["value"], "10.0");
    assert_eq!(
        v["timeouts.simple_tool_secs"]["source"],
        "environment variable SIMPLE_TOOL_TIMEOUT_SECS"
    );
}

#[test]
fn a_projects_dotenv_is_ignored_with_a_warning_and_can_be_imported() {
    let home = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    let env_file = project.path().join(".env");
    std::fs::write(
        &env_file,
        "KIMI_API_URL=http://127.0.0.1:9/v1\nKIMI_API_KEY=sk-from-project-file\nWORKFLOW_TOOL_TIMEOUT_SECS=50\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_exai"));
        cmd.args(args)
            .env_clear()
            .env("EXAI_HOME", home.path())
            .current_dir(project.path());
        cmd.output().expect("run exai")
    };
    let out = run(&["config", "show", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["providers.kimi_api_url"]["source"], "default");
    assert_eq!(v["providers.kimi_api_key"]["value"], "<unset>");
    let err = text(&out.stderr);
    assert!(
        err.contains("warning: ignored")
            && err.contains("KIMI_API_URL")
            && err.contains("exai config import"),
        "{err}"
    );
    assert!(!err.contains("sk-from-project-file") && !err.contains("127.0.0.1:9"));

    // --env-file reads it, because the user named it.
    let out = run(&["--env-file", ".env", "config", "show", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["providers.kimi_api_url"]["value"],
        "http://127.0.0.1:9/v1"
    );
    assert!(!text(&out.stderr).contains("warning"));

    // A dry run writes nothing; an import writes the data directory's .env, private, with the
    // Python daemon's address (which sets server.listen), and leaves out other programs' variables.
    let mut python_env = std::fs::read_to_string(&env_file).unwrap();
    python_env.push_str("EXAI_WS_PORT=8765\nLOG_FORMAT=json\n");
    std::fs::write(&env_file, python_env).unwrap();
    let out = run(&["config", "import", ".env", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!home.path().join(".env").exists());
    let out = run(&["config", "import", ".env"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("imported KIMI_API_KEY=<redacted>")
            && shown.contains("imported EXAI_WS_PORT=8765")
            && shown.contains("other programs' variables")
            && !shown.contains("sk-from-project-file"),
        "{shown}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(home.path().join(".env"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = exai(home.path(), &["config", "show", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["providers.kimi_api_url"]["value"],
        "http://127.0.0.1:9/v1"
    );
    assert_eq!(v["timeouts.workflow_tool_secs"]["value"], "50.0");

    // A value exai would refuse is not imported at all.
    std::fs::write(&env_file, "SIMPLE_TOOL_TIMEOUT_SECS=soon\n").unwrap();
    let before = std::fs::read_to_string(home.path().join(".env")).unwrap();
    let out = run(&["config", "import", ".env"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("nothing imported") && err.contains("SIMPLE_TOOL_TIMEOUT_SECS"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(home.path().join(".env")).unwrap(),
        before
    );
}

#[test]
fn config_show_redacts_secrets() {
    let home = tempfile::tempdir().unwrap();
    let secret = "sk-very-secret-value-123";
    let out = exai(
        home.path(),
        &["config", "show"],
        &[
            ("KIMI_API_KEY", secret),
            ("EXAI_AUTH_TOKEN", "token-abcdefghijklmnop"),
        ],
    );
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(!stdout.contains(secret) && !stdout.contains("token-abcdefghijklmnop"));
    assert!(stdout.contains("<redacted>"));
    let out = exai(
        home.path(),
        &["config", "check"],
        &[("GLM_API_KEY", secret), ("EXAI_SERVER_LISTEN", "nonsense")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(!text(&out.stderr).contains(secret));
}
