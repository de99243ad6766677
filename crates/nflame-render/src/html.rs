//! One self-contained HTML page: verdict, tables, interactive flame graphs.
//!
//! The page loads nothing from the network. Each flame graph is inferno's SVG,
//! shown in its own `<iframe>` from a `data:` URL, so its search and zoom
//! scripts run as they do when the SVG is opened alone, and several graphs do
//! not clash over element ids. Every text is HTML-escaped.

use std::io::{self, Write};

use base64::Engine as _;

/// A page to write.
#[derive(Debug, Clone, Default)]
pub struct HtmlPage {
    /// The page title and top heading.
    pub title: String,
    /// The content, in order.
    pub blocks: Vec<Block>,
}

/// A part of the page.
#[derive(Debug, Clone)]
pub enum Block {
    /// A section heading.
    Heading(String),
    /// A paragraph of plain text.
    Paragraph(String),
    /// Preformatted text (tables, verdicts as nflame prints them).
    Pre(String),
    /// A flame graph.
    Svg {
        /// Shown above the graph.
        caption: String,
        /// The SVG document.
        svg: Vec<u8>,
    },
    /// Shell commands, one per line.
    Commands(Vec<String>),
}

/// Escapes text for HTML element content and attribute values. Control
/// characters other than line breaks and tabs (names from profiled
/// processes may carry escape sequences) become spaces.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push(' '),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The pixel height an SVG asks for (its `height` attribute), if any.
fn svg_height(svg: &[u8]) -> Option<u32> {
    let head = &svg[..svg.len().min(4096)];
    let text = std::str::from_utf8(head).ok()?;
    let svg_tag = &text[text.find("<svg")?..];
    let i = svg_tag.find(" height=\"")? + " height=\"".len();
    let j = svg_tag[i..].find('"')? + i;
    svg_tag[i..j]
        .trim_end_matches("px")
        .parse::<f64>()
        .ok()
        .map(|h| h.ceil() as u32)
}

/// Inside a `data:` frame the document's origin is opaque and
/// `history.replaceState` (which inferno's script uses to keep zoom and search
/// in the URL) throws: make it a no-op there, so search and zoom work.
const FRAME_GUARD: &str = "<script type=\"text/ecmascript\"><![CDATA[(function(){var r=history.replaceState;history.replaceState=function(){try{return r.apply(history,arguments);}catch(e){}};})();]]></script>";

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1400px;padding:0 1em;color:#222}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}\
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:13px;line-height:1.35}\
iframe{width:100%;border:1px solid #ccc;background:#fff}figure{margin:0 0 1.2em 0}\
figcaption{font-size:.9em;color:#555;margin-bottom:.3em}code{font-size:13px}\
footer{margin-top:2em;font-size:.8em;color:#777}";

/// Writes the page.
pub fn write_html<W: Write>(page: &HtmlPage, mut w: W) -> io::Result<()> {
    let title = escape(&page.title);
    write!(
        w,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    )?;
    let mut graph = 0;
    for block in &page.blocks {
        match block {
            Block::Heading(h) => writeln!(w, "<h2>{}</h2>", escape(h))?,
            Block::Paragraph(p) => writeln!(w, "<p>{}</p>", escape(p))?,
            Block::Pre(t) => writeln!(w, "<pre>{}</pre>", escape(t))?,
            Block::Commands(cmds) => {
                writeln!(w, "<pre>")?;
                for c in cmds {
                    writeln!(w, "<code>{}</code>", escape(c))?;
                }
                writeln!(w, "</pre>")?;
            }
            Block::Svg { caption, svg } => {
                graph += 1;
                let height = svg_height(svg).unwrap_or(600).clamp(120, 20000) + 4;
                let guarded = nflame_profile::embed::insert_metadata(svg, FRAME_GUARD);
                let data = base64::engine::general_purpose::STANDARD.encode(guarded);
                writeln!(
                    w,
                    "<figure><figcaption>{}</figcaption>\
                     <iframe id=\"graph-{graph}\" title=\"{}\" style=\"height:{height}px\" \
                     src=\"data:image/svg+xml;base64,{data}\"></iframe></figure>",
                    escape(caption),
                    escape(caption),
                )?;
            }
        }
    }
    writeln!(
        w,
        "<footer>Written by nflame {}. Each graph: click to zoom, Ctrl-F (or the Search \
         button) to search.</footer>\n</body>\n</html>",
        escape(crate::VERSION)
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_and_embeds_graphs() {
        let page = HtmlPage {
            title: "<script>alert(1)</script> & co".into(),
            blocks: vec![
                Block::Pre("a<b> \"q\" 'x' &".into()),
                Block::Svg {
                    caption: "g<1>".into(),
                    svg: b"<svg height=\"300\"><g><title>x</title></g></svg>".to_vec(),
                },
                Block::Commands(vec!["nflame diff a.folded b.folded -o <d>.svg".into()]),
            ],
        };
        let mut out = Vec::new();
        write_html(&page, &mut out).unwrap();
        let html = String::from_utf8(out).unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"));
        assert!(html.contains("a&lt;b&gt; &quot;q&quot; &#39;x&#39; &amp;"));
        assert!(html.contains("style=\"height:304px\""));
        assert!(html.contains("src=\"data:image/svg+xml;base64,"));
        assert!(html.contains("-o &lt;d&gt;.svg"));
        assert_eq!(escape("a\x1b[31m\u{9b}b\nc"), "a [31m b\nc");
    }
}
