//! Markdown (CommonMark with tables and footnotes, via `pulldown-cmark`) into the [`TextSink`];
//! a YAML front matter `title:` becomes the document title.

use super::html::html_into_sink;
use super::sink::TextSink;
use crate::interrupt::Interrupt;
use crate::limits::{LimitExceeded, Limits};
use super::*;

pub(crate) fn parse_markdown(
    content: &str,
    limits: &Limits,
    interrupt: Interrupt<'_>,
) -> Result<(Option<String>, Vec<Section>), LimitExceeded> {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_TABLES);
    opts.insert(Options::ENABLE_FOOTNOTES);
    opts.insert(Options::ENABLE_STRIKETHROUGH);
    opts.insert(Options::ENABLE_TASKLISTS);
    opts.insert(Options::ENABLE_HEADING_ATTRIBUTES);
    opts.insert(Options::ENABLE_YAML_STYLE_METADATA_BLOCKS);

    let mut sink = TextSink::new(limits, interrupt);
    let mut meta_title: Option<String> = None;
    let mut in_meta = false;
    let mut image_depth = 0usize;
    let mut code_depth = 0usize;
    let mut html_block: Option<String> = None;
    let mut lists: Vec<Option<u64>> = Vec::new();
    let mut first_cell = true;

    for ev in Parser::new_ext(content, opts) {
        sink.tick();
        if sink.stopped() {
            break;
        }
        if image_depth > 0 {
            match ev {
                Event::Start(Tag::Image { .. }) => image_depth += 1,
                Event::End(TagEnd::Image) => image_depth -= 1,
                _ => {}
            }
            continue;
        }
        if let Some(buf) = html_block.as_mut() {
            match ev {
                Event::End(TagEnd::HtmlBlock) => {
                    let html = std::mem::take(buf);
                    html_block = None;
                    sink.brk(2);
                    let _ = html_into_sink(&html, &mut sink);
                    sink.brk(2);
                }
                Event::Html(s) | Event::Text(s) | Event::InlineHtml(s) => buf.push_str(&s),
                _ => {}
            }
            continue;
        }
        match ev {
            Event::Start(tag) => match tag {
                Tag::Heading { level, .. } => sink.start_heading(level as usize),
                Tag::Paragraph | Tag::BlockQuote(_) | Tag::Table(_) | Tag::FootnoteDefinition(_) => {
                    sink.brk(2)
                }
                Tag::DefinitionList => sink.brk(2),
                Tag::DefinitionListTitle | Tag::DefinitionListDefinition => sink.brk(1),
                Tag::CodeBlock(_) => {
                    sink.brk(2);
                    code_depth += 1;
                }
                Tag::HtmlBlock => html_block = Some(String::new()),
                Tag::List(start) => {
                    sink.brk(if lists.is_empty() { 2 } else { 1 });
                    lists.push(start);
                    sink.nesting("Markdown list nesting", lists.len());
                }
                Tag::Item => {
                    let marker = match lists.last_mut() {
                        Some(Some(k)) => {
                            let m = format!("{k}. ");
                            *k = k.saturating_add(1);
                            m
                        }
                        _ => "- ".to_string(),
                    };
                    sink.list_item(TextSink::list_prefix(lists.len(), &marker));
                }
                Tag::TableHead | Tag::TableRow => {
                    sink.brk(1);
                    first_cell = true;
                }
                Tag::TableCell => {
                    if !first_cell {
                        sink.text(" | ");
                    }
                    first_cell = false;
                }
                Tag::Image { .. } => image_depth = 1,
                Tag::MetadataBlock(_) => in_meta = true,
                _ => {} // emphasis, strong, strikethrough, links: keep the text only
            },
            Event::End(tag) => match tag {
                TagEnd::Heading(_) => sink.end_heading(),
                TagEnd::Paragraph
                | TagEnd::BlockQuote(_)
                | TagEnd::Table
                | TagEnd::FootnoteDefinition
                | TagEnd::DefinitionList => sink.brk(2),
                TagEnd::CodeBlock => {
                    code_depth = code_depth.saturating_sub(1);
                    sink.brk(2);
                }
                TagEnd::List(_) => {
                    lists.pop();
                    sink.brk(if lists.is_empty() { 2 } else { 1 });
                }
                TagEnd::Item | TagEnd::DefinitionListTitle | TagEnd::DefinitionListDefinition => {
                    sink.brk(1)
                }
                TagEnd::TableHead | TagEnd::TableRow => sink.brk(1),
                TagEnd::MetadataBlock(_) => in_meta = false,
                _ => {}
            },
            Event::Text(s) => {
                if in_meta {
                    if meta_title.is_none() {
                        meta_title = yaml_title(&s);
                    }
                } else if code_depth > 0 {
                    sink.raw(&s);
                } else {
                    sink.text(&s);
                }
            }
            Event::Code(s) | Event::InlineMath(s) => sink.text(&s),
            Event::DisplayMath(s) => {
                sink.brk(2);
                sink.raw(&s);
                sink.brk(2);
            }
            Event::Html(s) => {
                let _ = html_into_sink(&s, &mut sink);
            }
            Event::InlineHtml(s) => {
                let lower = s.trim().to_ascii_lowercase();
                if lower.starts_with("<br") || lower.starts_with("</br") {
                    sink.line_break();
                }
            }
            Event::FootnoteReference(s) => {
                sink.text("[");
                sink.text(&s);
                sink.text("]");
            }
            Event::SoftBreak => sink.text(" "),
            Event::HardBreak => sink.line_break(),
            Event::Rule => sink.brk(2),
            Event::TaskListMarker(done) => {
                sink.text(if done { "[x]" } else { "[ ]" });
                sink.text(" ");
            }
        }
    }
    let (sections, first_h1) = sink.finish()?;
    Ok((meta_title.or(first_h1), sections))
}

/// `title:` from a YAML front-matter block, if any.
pub(crate) fn yaml_title(yaml: &str) -> Option<String> {
    for line in yaml.lines() {
        if let Some(v) = line.strip_prefix("title:") {
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'').trim();
            if !v.is_empty() {
                return Some(v.to_string());
            }
        }
    }
    None
}

