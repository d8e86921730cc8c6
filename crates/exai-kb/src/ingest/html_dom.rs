//! Building an HTML page's tree with work bounded by its size, whatever the page holds.
//!
//! `Html::parse_document` (html5ever's tokenizer and tree builder) is not safe on hostile
//! input: its tree builder scans the stack of open elements for most start tags, so a page of
//! N nested `<div>`s costs N²; its tokenizer checks each attribute against the tag's earlier
//! ones, so one tag with N attributes costs N² too; and unclosed formatting elements are
//! re-opened in every later paragraph, so a small page can build a tree of N² nodes.
//!
//! Here html5gum's tokenizer (attributes in an ordered map) feeds html5ever's tree builder, and
//! between the two every start tag is checked against what the builder holds: past
//! [`MAX_OPEN_ELEMENTS`] open elements (the stack plus the list of active formatting elements)
//! further start tags are ignored, so deeper content is flattened into the element at the cap:
//! its text is kept, its tags are not (nor the skip rules they would have triggered). A page
//! whose tree would still outgrow its own size in nodes is refused.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use ego_tree::NodeId;
use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    Doctype as TbDoctype, Tag, TagKind, Token as TbToken, TokenSink, TokenSinkResult,
};
use html5ever::tree_builder::{TreeBuilder, TreeBuilderOpts};
use html5ever::{Attribute, LocalName, QualName, ns};
use html5gum::{DefaultEmitter, Emitter, ForwardingEmitter, State, Token, Tokenizer};
use scraper::{Html, HtmlTreeSink};

/// Most elements the tree builder may hold open (its stack plus its active formatting list)
/// before further start tags are ignored. Documentation pages stay far below (rustdoc and
/// mdBook pages nest some 30 deep); the builder's work per token grows with this number.
pub const MAX_OPEN_ELEMENTS: usize = 128;

/// Nodes a page may build beyond one per byte of its text. Markup needs at least one byte per
/// node it creates, except elements the builder re-opens by itself, so only a page written to
/// multiply its elements goes past this.
const NODE_SLACK: usize = 16 * 1024;

/// The page would build more nodes than [`node_budget`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyNodes;

/// Most nodes a page of `bytes` bytes may build.
pub fn node_budget(bytes: usize) -> usize {
    bytes.saturating_add(NODE_SLACK)
}

/// The tree builder with what feeding it needs to remember.
struct Builder {
    tree: TreeBuilder<NodeId, HtmlTreeSink>,
    budget: usize,
    /// html5gum reports a repeated attribute before the tag that holds it.
    duplicate_attribute: bool,
    over_budget: bool,
}

impl Builder {
    /// Feed one token to the tree builder; the tokenizer state it asks for, if any.
    fn process(&mut self, token: Token) -> Option<State> {
        if self.over_budget {
            return None;
        }
        let tree = &self.tree;
        let result = match token {
            Token::StartTag(tag) => {
                let had_duplicate_attributes = std::mem::take(&mut self.duplicate_attribute);
                if held(tree) >= MAX_OPEN_ELEMENTS {
                    return None;
                }
                let attrs = tag
                    .attributes
                    .iter()
                    .map(|(name, value)| Attribute {
                        name: QualName::new(None, ns!(), local_name(name)),
                        value: tendril(value),
                    })
                    .collect();
                tree.process_token(
                    TbToken::TagToken(Tag {
                        kind: TagKind::StartTag,
                        name: local_name(&tag.name),
                        self_closing: tag.self_closing,
                        attrs,
                        had_duplicate_attributes,
                    }),
                    1,
                )
            }
            Token::EndTag(tag) => tree.process_token(
                TbToken::TagToken(Tag {
                    kind: TagKind::EndTag,
                    name: local_name(&tag.name),
                    self_closing: false,
                    attrs: Vec::new(),
                    had_duplicate_attributes: false,
                }),
                1,
            ),
            Token::String(text) => {
                // html5ever's tokenizer reports NUL on its own: the tree builder drops or
                // replaces it depending on where it stands.
                let mut result = TokenSinkResult::Continue;
                for (i, part) in text.split(|b| *b == 0).enumerate() {
                    if i > 0 {
                        // Text never switches the tokenizer's state.
                        let _ = tree.process_token(TbToken::NullCharacterToken, 1);
                    }
                    if !part.is_empty() {
                        result = tree.process_token(TbToken::CharacterTokens(tendril(part)), 1);
                    }
                }
                result
            }
            Token::Comment(text) => tree.process_token(TbToken::CommentToken(tendril(&text)), 1),
            Token::Doctype(doctype) => tree.process_token(
                TbToken::DoctypeToken(TbDoctype {
                    name: Some(&doctype.name)
                        .filter(|n| !n.is_empty())
                        .map(|n| tendril(n)),
                    public_id: doctype.public_identifier.as_deref().map(|v| tendril(v)),
                    system_id: doctype.system_identifier.as_deref().map(|v| tendril(v)),
                    force_quirks: doctype.force_quirks,
                }),
                1,
            ),
            Token::Error(error) => {
                self.duplicate_attribute |= matches!(*error, html5gum::Error::DuplicateAttribute);
                return None;
            }
        };
        if tree.sink.0.borrow().tree.nodes().len() > self.budget {
            self.over_budget = true;
        }
        match result {
            TokenSinkResult::Continue | TokenSinkResult::EncodingIndicator(_) => None,
            TokenSinkResult::Script(_) => Some(State::Data),
            TokenSinkResult::Plaintext => Some(State::PlainText),
            TokenSinkResult::RawData(RawKind::Rcdata) => Some(State::RcData),
            TokenSinkResult::RawData(RawKind::Rawtext) => Some(State::RawText),
            // The escaped script states are entered by the tokenizer itself, never asked for.
            TokenSinkResult::RawData(RawKind::ScriptData | RawKind::ScriptDataEscaped(_)) => {
                Some(State::ScriptData)
            }
        }
    }
}

/// html5gum's default emitter with every token fed to the tree builder as soon as it is
/// complete, so the builder's answers (the state after a start tag, whether `<![CDATA[` opens
/// a CDATA section) reflect everything before the point where the tokenizer asks.
struct Emit {
    inner: DefaultEmitter,
    builder: Rc<RefCell<Builder>>,
}

impl Emit {
    fn drain(&mut self) -> Option<State> {
        let mut builder = self.builder.borrow_mut();
        let mut state = None;
        while let Some(token) = Emitter::pop_token(&mut self.inner) {
            state = builder.process(token).or(state);
        }
        state
    }
}

impl ForwardingEmitter for Emit {
    type Token = Token;

    fn inner(&mut self) -> &mut impl Emitter<Token = Self::Token> {
        &mut self.inner
    }

    fn pop_token(&mut self) -> Option<Token> {
        self.drain();
        None
    }

    fn emit_current_tag(&mut self) -> Option<State> {
        let naive = Emitter::emit_current_tag(&mut self.inner);
        self.drain().or(naive)
    }

    fn adjusted_current_node_present_but_not_in_html_namespace(&mut self) -> bool {
        // Text before `<![CDATA[` is still buffered, and it can change the current node (text
        // in a MathML `<mi>` re-opens HTML formatting elements). Starting a comment flushes it;
        // the tokenizer starts one anyway when the answer is no.
        Emitter::init_comment(&mut self.inner);
        self.drain();
        self.builder
            .borrow()
            .tree
            .adjusted_current_node_present_but_not_in_html_namespace()
    }
}

/// Counts the handles the tree builder holds: its open elements, its active formatting
/// elements and a few fixed ones (document, head, form).
struct Count(Cell<usize>);

impl html5ever::tree_builder::Tracer for Count {
    type Handle = NodeId;

    fn trace_handle(&self, _node: &NodeId) {
        self.0.set(self.0.get() + 1);
    }
}

fn held(tree: &TreeBuilder<NodeId, HtmlTreeSink>) -> usize {
    let count = Count(Cell::new(0));
    tree.trace_handles(&count);
    count.0.get()
}

fn tendril(bytes: &[u8]) -> StrTendril {
    StrTendril::from_slice(&String::from_utf8_lossy(bytes))
}

fn local_name(bytes: &[u8]) -> LocalName {
    LocalName::from(&*String::from_utf8_lossy(bytes))
}

/// Parse a whole page into scraper's tree, in time and memory linear in its length.
pub fn parse_document(html: &str) -> Result<Html, TooManyNodes> {
    let builder = Rc::new(RefCell::new(Builder {
        tree: TreeBuilder::new(
            HtmlTreeSink::new(Html::new_document()),
            TreeBuilderOpts::default(),
        ),
        budget: node_budget(html.len()),
        duplicate_attribute: false,
        over_budget: false,
    }));
    let mut inner = DefaultEmitter::default();
    // The tree builder says which tags switch the tokenizer's state; guessing would disagree
    // with it (e.g. `<style>` inside `<svg>`).
    inner.naively_switch_states(false);
    let tokenizer = Tokenizer::new_with_emitter(
        html,
        Emit {
            inner,
            builder: Rc::clone(&builder),
        },
    );
    // Every token is consumed inside the emitter; the iterator only drives the tokenizer.
    for token in tokenizer {
        match token {
            Ok(_) => {}
            Err(never) => match never {},
        }
    }
    let builder = builder.borrow();
    if builder.over_budget {
        return Err(TooManyNodes);
    }
    // Nothing is left to tokenize, whatever the builder asks for.
    let _ = builder.tree.process_token(TbToken::EOFToken, 1);
    builder.tree.end();
    Ok(builder.tree.sink.0.replace(Html::new_document()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(doc: &Html) -> String {
        doc.root_element().text().collect()
    }

    #[test]
    fn builds_the_same_tree_as_html5ever_on_ordinary_pages() {
        let pages = [
            "<!DOCTYPE html><html><head><title>T</title><style>p>a{}</style></head><body><p>a<p>b<b>c<p>d</b></body></html>",
            "<table><tr><td>1<td>2</table>x<ul><li>a<li>b</ul>",
            "<svg><style><p>in svg</p></style></svg><script>if (a<b) {}</script><textarea><b></textarea>",
            "<math><mi>x</mi></math><svg><![CDATA[cdata <b>]]></svg><!-- c --><pre>\nkeep</pre>",
            "a\0b<div class=\"x y\" id=i data-a='1' data-a='2'>&amp;&lt;&#x41;&nbsp;</div>",
            // The text re-opens `<b>` inside `<mi>`, so `<![CDATA[` is a bogus comment (found
            // by fuzzing: the text was still buffered when the tokenizer asked).
            "<math><mi><p><b></p>e<![CDATA[z]]></mi></math>",
        ];
        for page in pages {
            let ours = parse_document(page).unwrap();
            let theirs = Html::parse_document(page);
            assert_eq!(ours.html(), theirs.html(), "{page}");
        }
    }

    #[test]
    fn deep_nesting_is_flattened_at_the_cap() {
        let n = 10_000;
        let page = format!("<body>{}deep{}", "<div>".repeat(n), "</div>".repeat(n));
        let doc = parse_document(&page).unwrap();
        let depth = doc
            .tree
            .nodes()
            .map(|node| node.ancestors().count())
            .max()
            .unwrap_or(0);
        assert!(depth <= MAX_OPEN_ELEMENTS, "depth {depth}");
        assert_eq!(text_of(&doc), "deep");
    }

    #[test]
    fn reopened_formatting_elements_cannot_multiply_the_tree() {
        // Each distinct `<b>` stays in the active formatting list and every paragraph re-opens
        // all of them: html5ever alone builds n²/2 nodes from these n tags.
        let page: String = (0..5_000).map(|i| format!("<b c{i}><p>y")).collect();
        let doc = parse_document(&page).unwrap();
        assert!(doc.tree.nodes().len() <= node_budget(page.len()));
        // Kept under the cap, they are still re-opened in every block that closes them.
        let opened: String = (0..60).map(|i| format!("<b c{i}>")).collect();
        let page = format!("<p>{opened}</p>{}", "<div>y</div>".repeat(5_000));
        assert_eq!(parse_document(&page).err(), Some(TooManyNodes));
    }
}
