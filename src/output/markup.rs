//! Text inside markup: one escape for the SVG heatmap and the HTML report.

/// `text` safe as XML or HTML element content or a quoted attribute value. `&#39;` rather
/// than `&apos;`, which HTML 4 lacks; both mean `'` to every XML and HTML5 reader.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
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
