//! Unit tests of this module and its parts.

use super::*;

fn all_text(d: &ParsedDocument) -> String {
    d.sections.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join("\n\n")
}

#[test]
fn format_names() {
    assert_eq!(DocFormat::PlainText.as_str(), "text");
    assert_eq!(DocFormat::Markdown.as_str(), "markdown");
    assert_eq!(DocFormat::Html.as_str(), "html");
}

#[test]
fn detect_by_extension_and_content() {
    assert_eq!(detect_format("a/b/README.MD", "plain"), DocFormat::Markdown);
    assert_eq!(detect_format("x.markdown", ""), DocFormat::Markdown);
    assert_eq!(detect_format("x.HTM", "# not md"), DocFormat::Html);
    assert_eq!(detect_format("x.txt", "<html><body>x</body></html>"), DocFormat::PlainText);
    assert_eq!(detect_format("noext", "<!DOCTYPE html><p>x"), DocFormat::Html);
    assert_eq!(detect_format("noext", "  <HTML><body>x"), DocFormat::Html);
    assert_eq!(detect_format("x.dat", "<?xml version=\"1.0\"?>\n<!DOCTYPE html PUBLIC><html>"), DocFormat::Html);
    assert_eq!(detect_format("frag", "<div><p>a</p><p>b</p><p>c</p><ul><li>x</li></ul></div>"), DocFormat::Html);
    assert_eq!(detect_format("notes", "# Title\n\nSome text."), DocFormat::Markdown);
    assert_eq!(detect_format("notes", "Intro line\n\n## Part\n\n- a\n- b\n\n```\ncode\n```\n"), DocFormat::Markdown);
    assert_eq!(detect_format("notes", "Just some text.\nWith lines."), DocFormat::PlainText);
    assert_eq!(detect_format("", ""), DocFormat::PlainText);
    assert_eq!(detect_format("weird.", "a < b and c > d"), DocFormat::PlainText);
}

#[test]
fn errors() {
    assert_eq!(parse("e.txt", ""), Err(ParseError::Empty { file_name: "e.txt".into() }));
    assert!(matches!(parse("e.txt", " \n\r\n\t "), Err(ParseError::Empty { .. })));
    assert!(matches!(
        parse("e.html", "<html><head><title>T</title><script>x()</script></head><body> </body></html>"),
        Err(ParseError::Empty { .. })
    ));
    assert!(matches!(parse("e.md", "<!-- only a comment -->\n\n#\n"), Err(ParseError::Empty { .. })));
    let e = parse("bin.txt", "abc\0def").unwrap_err();
    assert_eq!(e, ParseError::NulCharacter { file_name: "bin.txt".into(), offset: 3 });
    let msg = e.to_string();
    assert!(msg.contains("bin.txt") && msg.contains("byte offset 3"), "{msg}");
    let msg = ParseError::Empty { file_name: "x".into() }.to_string();
    assert!(msg.contains("contains no text after parsing"), "{msg}");
    // &#0; must not smuggle a NUL in
    let d = parse("a.html", "<p>a&#0;b</p>").unwrap();
    assert!(!all_text(&d).contains('\0'));
}

#[test]
fn plain_text() {
    let d = parse("a.txt", "\u{feff}Line one\r\ncontinues here.\r\n\r\n\r\n\r\nSecond   para.  \n\n\n").unwrap();
    assert_eq!(d.format, DocFormat::PlainText);
    assert_eq!(d.title, None);
    assert_eq!(d.sections.len(), 1);
    assert!(d.sections[0].headings.is_empty());
    assert_eq!(d.sections[0].text, "Line one\ncontinues here.\n\nSecond   para.");
}

#[test]
fn html_basic_structure() {
    let html = r#"<!DOCTYPE html>
<HTML><HEAD><TITLE> My &amp; Page </TITLE>
<style>p { color: red; }</style><script>var x = "<p>not text</p>";</script>
<meta name="x" content="a>b"><noscript>head noscript</noscript>stray head text</HEAD>
<BODY>
<nav><a href="/">Home</a> | <a href="/docs">Docs</a></nav>
<h1>Chapter 9</h1>
<p>Intro   text
 spanning lines.</p>
<h2 class="x">9.1 Basics</h2>
<p>Basics <b>bold</b> and <i>it</i>alic.</p>
<h2>9.2 Indexes</h2>
<h3>9.2.1 B-Tree</h3>
<p>B-trees &mdash; balanced &lt;trees&gt; &#8212; &#x2014; caf&eacute; 5&nbsp;MB &copy</p>
<h2>Empty</h2>
<h2>9.3 Lists</h2><ul><li>one<li>two</ul><ol start="3"><li>three</li><li>four</li></ol>
<!-- a comment <p>hidden</p> -->
<pre>
  line 1
    line 2 &lt;x&gt;
</pre>
<p>after<br>break<br/>again</p>
<div class="navfooter">Prev Next</div>
<noscript>enable js</noscript>
</BODY></HTML>"#;
    let d = parse("page.html", html).unwrap();
    assert_eq!(d.format, DocFormat::Html);
    assert_eq!(d.title.as_deref(), Some("My & Page"));
    let heads: Vec<Vec<String>> = d.sections.iter().map(|s| s.headings.clone()).collect();
    assert_eq!(
        heads,
        vec![
            vec!["Chapter 9".to_string()],
            vec!["Chapter 9".into(), "9.1 Basics".into()],
            vec!["Chapter 9".into(), "9.2 Indexes".into(), "9.2.1 B-Tree".into()],
            vec!["Chapter 9".into(), "9.3 Lists".into()],
        ]
    );
    assert_eq!(d.sections[0].text, "Intro text spanning lines.");
    assert_eq!(d.sections[1].text, "Basics bold and italic.");
    assert_eq!(d.sections[2].text, "B-trees — balanced <trees> — — café 5 MB ©");
    let lists = &d.sections[3].text;
    assert!(
        lists.starts_with("- one\n- two\n\n3. three\n4. four\n\n  line 1\n    line 2 <x>\n\nafter\nbreak\nagain"),
        "{lists:?}"
    );
    let all = all_text(&d);
    for bad in ["color", "not text", "Home", "hidden", "Prev", "enable js", "<p", "comment", "stray", "head noscript"] {
        assert!(!all.contains(bad), "found {bad:?} in {all:?}");
    }
}

#[test]
fn html_tolerance() {
    let html = "<div title='a > b' data-x=\"<p>\">Text one<p>para <unknown-tag foo>two</p>\
                    <p>3 < 4 and 5 > 4 &unknown; &amp &#xZZ; &#99999999999;</p>\
                    <![CDATA[raw <b>cdata</b>]]><P>UPPER</P><h2>Open heading<p>body after\
                    <table><tr><td>c1<td>c2</tr><tr><th>c3</table><span>trailing <b>unclosed";
    let d = parse("frag.htm", html).unwrap();
    let all = all_text(&d);
    assert!(all.starts_with("Text one\n\npara two\n\n3 < 4 and 5 > 4 &unknown; & &#xZZ; \u{fffd}"), "{all:?}");
    assert!(all.contains("raw <b>cdata</b>"));
    assert!(all.contains("UPPER"));
    assert!(all.contains("c1\nc2\nc3"), "{all:?}");
    assert!(all.ends_with("trailing unclosed"));
    assert_eq!(d.sections.last().map(|s| s.headings.clone()), Some(vec!["Open heading".to_string()]));
    // Unterminated constructs at the end must not panic.
    for s in [
        "<",
        "<a",
        "<a href='x",
        "<!--",
        "<![CDATA[x",
        "</",
        "</a",
        "<script>x",
        "&",
        "&#",
        "&#x",
        "<p>é<",
        "x<!d",
        "<title>t",
    ] {
        let _ = parse("x.html", s);
    }
}

#[test]
fn html_title_fallback_and_nested_skip() {
    let d = parse("x.html", "<body><h1>Main</h1><div class='sidebar x'><p>keep</p></div><nav><nav>in</nav>still nav</nav><p>visible</p></body>").unwrap();
    assert_eq!(d.title.as_deref(), Some("Main"));
    let all = all_text(&d);
    assert!(all.contains("keep") && all.contains("visible"));
    assert!(!all.contains("nav"), "{all:?}");
}

#[test]
fn html_admonition_headings_end_with_their_box() {
    let html = "<h2>Params</h2><h3>Storage</h3><p>before</p><div class=\"note\"><h3 class=\"title\">Note</h3><p>noted</p></div><p>after</p><h2>Next</h2><p>x</p>";
    let d = parse("a.html", html).unwrap();
    let got: Vec<(Vec<String>, String)> = d.sections.iter().map(|s| (s.headings.clone(), s.text.clone())).collect();
    let v = |a: &[&str], t: &str| (a.iter().map(|s| s.to_string()).collect::<Vec<_>>(), t.to_string());
    assert_eq!(
        got,
        vec![
            v(&["Params", "Storage"], "before"),
            v(&["Params", "Note"], "noted"),
            v(&["Params", "Storage"], "after"),
            v(&["Next"], "x"),
        ]
    );
}

/// Deterministic pseudo-random documents built from nasty fragments: no
/// panics, and the output invariants hold.
#[test]
fn fuzz_no_panics() {
    const FRAGS: &[&str] = &[
        "<",
        ">",
        "<p>",
        "</p>",
        "<div class='note'>",
        "</div>",
        "<h2>",
        "</h2>",
        "<h1 x=\"a>b\">",
        "<pre>",
        "</pre>",
        "&amp",
        "&#x",
        "&#",
        "&",
        ";",
        "é",
        "😀",
        "\n",
        "\r\n",
        "\n\n",
        " ",
        "\t",
        "word",
        "Word.",
        "<!--",
        "-->",
        "<![CDATA[",
        "]]>",
        "<script>",
        "</script>",
        "<title>",
        "</title>",
        "# ",
        "## ",
        "```",
        "*",
        "_",
        "[",
        "](",
        ")",
        "![",
        "---",
        "===",
        "- ",
        "1. ",
        "|",
        "<br>",
        "<li>",
        "<ul>",
        "</ul>",
        "'",
        "\"",
        "<head>",
        "<body>",
        "&nbsp;",
        "&#8212;",
        "\u{a0}",
        "\u{ad}",
        "<nav>",
        "</nav>",
        "<table><tr><td>",
        "</",
    ];
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..1500 {
        let n = (next() % 60) as usize;
        let doc: String = (0..n).map(|_| FRAGS[(next() % FRAGS.len() as u64) as usize]).collect();
        let name = ["a.html", "a.md", "a.txt", "noext"][round % 4];
        match parse(name, &doc) {
            Ok(d) => {
                assert!(!d.sections.is_empty());
                for s in &d.sections {
                    assert!(!s.text.trim().is_empty(), "{doc:?}");
                    assert!(s.text.lines().all(|l| l == l.trim_end()), "{doc:?}");
                    assert!(!s.text.contains("\n\n\n"), "{doc:?}");
                    assert!(s.headings.iter().all(|h| !h.is_empty() && h == h.trim()), "{doc:?}");
                }
            }
            Err(ParseError::Empty { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn markdown_structure() {
    let md = "---\ntitle: \"Guide\"\nauthor: me\n---\n\
# Top\n\nIntro with *emphasis*, __strong__ and [a link](http://x.y/z \"t\") and ![img alt](p.png).\n\n\
<!-- hidden comment -->\n\n\
Setext Two\n----------\n\n\
Text two with `code` and a very\nsoft break.\n\n\
### Deeper {#anchor}\n\n\
- item one\n- item **two**\n  - nested\n1. first\n2. second\n\n\
```sql\nSELECT 1;\n  -- indented\n```\n\n\
| a | b |\n|---|---|\n| 1 | 2 |\n\n\
Other Top\n=========\n\nLast.\n";
    let d = parse("guide.md", md).unwrap();
    assert_eq!(d.format, DocFormat::Markdown);
    assert_eq!(d.title.as_deref(), Some("Guide"));
    let heads: Vec<Vec<String>> = d.sections.iter().map(|s| s.headings.clone()).collect();
    assert_eq!(
        heads,
        vec![
            vec!["Top".to_string()],
            vec!["Top".into(), "Setext Two".into()],
            vec!["Top".into(), "Setext Two".into(), "Deeper".into()],
            vec!["Other Top".to_string()],
        ]
    );
    assert_eq!(d.sections[0].text, "Intro with emphasis, strong and a link and .");
    assert_eq!(d.sections[1].text, "Text two with code and a very soft break.");
    let deeper = &d.sections[2].text;
    assert!(deeper.contains("- item one\n- item two\n  - nested"), "{deeper:?}");
    assert!(deeper.contains("1. first\n2. second"), "{deeper:?}");
    assert!(deeper.contains("SELECT 1;\n  -- indented"), "{deeper:?}");
    assert!(deeper.contains("a | b\n1 | 2"), "{deeper:?}");
    assert_eq!(d.sections[3].text, "Last.");
    let all = all_text(&d);
    assert!(!all.contains("hidden") && !all.contains("http") && !all.contains("img alt") && !all.contains('*'));
}

#[test]
fn markdown_title_from_h1_and_html_block() {
    let d =
        parse("a.md", "Preface text.\n\n# Real Title\n\n<div>\n<p>Inside &amp; html</p>\n</div>\n\nAfter.").unwrap();
    assert_eq!(d.title.as_deref(), Some("Real Title"));
    assert_eq!(d.sections[0].headings, Vec::<String>::new());
    assert_eq!(d.sections[0].text, "Preface text.");
    assert_eq!(d.sections[1].text, "Inside & html\n\nAfter.");
}

#[test]
fn entity_decoding() {
    assert_eq!(
        decode_entities("a &lt;b&gt; &amp;amp; &quot;q&quot; &#39; &#x27; &eacute;&Omega;&sigmaf;&hellip;"),
        "a <b> &amp; \"q\" ' ' éΩς…"
    );
    assert_eq!(decode_entities("&#150;&#x80;&#xD800;&#1114112;"), "–€\u{fffd}\u{fffd}");
    assert_eq!(decode_entities("AT&T &foo bar&"), "AT&T &foo bar&");
}

fn pg_doc(name: &str) -> Option<String> {
    std::fs::read_to_string(format!("/usr/share/doc/postgresql-doc-15/html/{name}")).ok()
}

#[test]
fn real_postgres_docs() {
    let Some(html) = pg_doc("sql-createindex.html") else {
        eprintln!("postgresql-doc-15 not installed; skipping");
        return;
    };
    let d = parse("sql-createindex.html", &html).unwrap();
    assert_eq!(d.format, DocFormat::Html);
    assert_eq!(d.title.as_deref(), Some("CREATE INDEX"));
    assert!(d.sections.len() >= 5, "{}", d.sections.len());
    let all = all_text(&d);
    assert!(all.contains("CREATE INDEX constructs an index"), "{all}");
    assert!(all.contains("CREATE [ UNIQUE ] INDEX [ CONCURRENTLY ]"));
    assert!(!all.contains("<em") && !all.contains("<p>") && !all.contains("</"), "tag text leaked");
    assert!(!all.contains("Prev") || !all.contains("Next\n"), "navigation chrome leaked");
    assert!(d.sections.iter().any(|s| s.headings.iter().any(|h| h == "Parameters")));
    assert!(d.sections.iter().any(|s| s.headings.iter().any(|h| h == "Examples")));
}

#[test]
fn all_postgres_docs_parse() {
    let Ok(dir) = std::fs::read_dir("/usr/share/doc/postgresql-doc-15/html") else {
        return;
    };
    let mut n = 0;
    for e in dir.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("html") {
            continue;
        }
        let Ok(html) = std::fs::read_to_string(&p) else { continue };
        let name = p.file_name().and_then(|x| x.to_str()).unwrap_or("?").to_string();
        match parse(&name, &html) {
            Ok(d) => {
                assert!(d.title.is_some(), "{name}: no title");
                for s in &d.sections {
                    assert!(!s.text.contains("<script"), "{name}");
                    assert!(!s.text.trim().is_empty(), "{name}");
                }
            }
            Err(e) => panic!("{name}: {e}"),
        }
        n += 1;
    }
    eprintln!("parsed {n} PostgreSQL doc pages");
}
