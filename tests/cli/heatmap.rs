//! The heatmap pictures as a reader sees them: every label drawn with a real glyph (bundled
//! DejaVu Sans for Latin, Greek, Cyrillic and the tokenizers' markers, a system font for CJK),
//! the PNG and the SVG agreeing on sizes, positions and colours, and `explain --svg` end to end.
//!
//! The CJK labels need a CJK font installed: Debian's fonts-wqy-microhei (scripts/test.sh
//! installs it). Without one these tests fail rather than skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use simattr::output::heatmap::fonts::{self, FontSource};
use simattr::output::heatmap::{self, Layout, Prompts, Rgb, BLUE_ARM, NON_FINITE, RED_ARM, WHITE};

const LABELS: [&str; 8] = ["▁guitar", "Ġplays", "café", "naïve", "Москва", "Αθήνα", "東京", "ソウル"];
/// How many of LABELS the bundled font covers; the rest are CJK.
const BUNDLED_LABELS: usize = 6;

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

struct Png {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Png {
    fn decode(bytes: &[u8]) -> Self {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("a valid PNG");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("a frame");
        assert_eq!((info.color_type, info.bit_depth), (png::ColorType::Rgb, png::BitDepth::Eight));
        buf.truncate(info.line_size * info.height as usize);
        Png { width: info.width as usize, height: info.height as usize, rgb: buf }
    }

    fn at(&self, x: usize, y: usize) -> Rgb {
        let k = (y * self.width + x) * 3;
        [self.rgb[k], self.rgb[k + 1], self.rgb[k + 2]]
    }

    /// Pixels in [x0, x1) × [y0, y1) that are not white.
    fn ink(&self, x0: usize, y0: usize, x1: usize, y1: usize) -> usize {
        (y0..y1).flat_map(|y| (x0..x1).map(move |x| (x, y))).filter(|&(x, y)| self.at(x, y) != WHITE).count()
    }
}

/// The inked pixels of a drawn run relative to its pen start on the baseline, whatever size of
/// mask they were drawn in: equal only for the same shapes at the same places.
fn ink(mask: &fonts::TextMask) -> Vec<(i64, i64, u8)> {
    let (ox, oy) = (mask.origin as i64, mask.baseline as i64);
    (0..mask.height)
        .flat_map(|y| (0..mask.width).map(move |x| (x, y)))
        .filter_map(|(x, y)| {
            let c = mask.coverage[y * mask.width + x];
            (c > 0).then_some((x as i64 - ox, y as i64 - oy, c))
        })
        .collect()
}

fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

fn num(node: roxmltree::Node, name: &str) -> usize {
    let v = node.attribute(name).unwrap_or_else(|| panic!("<{}> has no {name}", node.tag_name().name()));
    v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number"))
}

#[test]
fn every_label_character_gets_a_real_glyph() {
    for (n, label) in LABELS.iter().enumerate() {
        for c in label.chars() {
            let glyph = fonts::resolve(c);
            if n >= BUNDLED_LABELS && glyph.is_missing() {
                panic!(
                    "no font on this system has {c:?} (U+{:04X}) of {label:?}: install a CJK font, e.g. \
                     `apt-get install fonts-wqy-microhei` (scripts/test.sh does)",
                    c as u32
                );
            }
            assert!(!glyph.is_missing(), "{c:?} of {label:?} has no glyph: {glyph:?}");
            if n < BUNDLED_LABELS {
                assert_eq!(glyph.source, FontSource::Bundled, "{c:?} of {label:?} should come from the bundled font");
            } else {
                assert!(matches!(glyph.source, FontSource::System(_)), "{c:?} of {label:?}: {glyph:?}");
            }
            // Drawn, the character is not the .notdef box.
            let (drawn, notdef) = (fonts::text_mask(&c.to_string()), fonts::notdef_mask(1));
            assert!(drawn.inked() > 0 || c.is_whitespace(), "{c:?} of {label:?} draws nothing");
            assert_ne!(ink(&drawn), ink(&notdef), "{c:?} of {label:?} is drawn as the replacement box");
        }
        let n_chars = label.chars().count();
        let (drawn, boxes) = (fonts::text_mask(label), fonts::notdef_mask(n_chars));
        assert_ne!(ink(&drawn), ink(&boxes), "{label:?} drawn as replacement boxes");
        assert!(fonts::text_width(label) > 8.0 * n_chars as f32 * 0.5, "{label:?} is implausibly narrow");
    }
}

#[test]
fn a_character_no_font_has_is_reported_and_drawn_as_the_box() {
    // The check above can fail: a private-use character has no glyph anywhere.
    let glyph = fonts::resolve('\u{E000}');
    assert!(glyph.is_missing(), "{glyph:?}");
    assert_eq!(glyph.source, FontSource::Bundled, "the replacement comes from the bundled font");
    let drawn = fonts::text_mask("\u{E000}");
    assert_eq!(drawn, fonts::notdef_mask(1));
    assert_eq!(ink(&drawn), ink(&fonts::notdef_mask(1)));
    assert!(drawn.inked() > 20, "the replacement box must be visible, not blank");
    // Not a question mark either.
    assert_ne!(ink(&drawn), ink(&fonts::text_mask("?")));
}

#[test]
fn the_png_draws_every_label_in_its_row() {
    let tokens = strings(&LABELS);
    let n = tokens.len();
    let values: Vec<f64> = (0..n * n).map(|k| (k as f64 - 20.0) / 10.0).collect();
    let png = Png::decode(
        &heatmap::heatmap_png(&tokens, &tokens, &values, "Москва ↔ 東京", &Prompts::default()).expect("png"),
    );
    let layout = heatmap::layout(&tokens, &tokens, &values, "Москва ↔ 東京", &Prompts::default()).expect("layout");
    assert_eq!((png.width, png.height), (layout.width, layout.height));
    for (i, label) in layout.row_labels.iter().enumerate() {
        let cell = layout.cell(i, 0);
        let (x0, x1) = (label.start() as usize, label.x);
        let ink = png.ink(x0, cell.y, x1, cell.y + cell.h);
        assert!(ink > 3 * LABELS[i].chars().count(), "row label {:?} barely drawn: {ink} pixels", LABELS[i]);
        assert_eq!(png.ink(layout.grid.x - 4, cell.y, layout.grid.x - 1, cell.y + cell.h), 0, "label touches the grid");
    }
    for (j, label) in layout.col_labels.iter().enumerate() {
        let cell = layout.cell(0, j);
        let ink = png.ink(cell.x, label.y - label.width, cell.x + cell.w, label.y);
        assert!(ink > 3 * LABELS[j].chars().count(), "column label {:?} barely drawn: {ink} pixels", LABELS[j]);
    }
}

/// A 3×4 matrix and the colours some of its cells must have: the extremes, zero, anchors,
/// halfway between two anchors, a NaN and an infinity.
struct Known {
    a: Vec<String>,
    b: Vec<String>,
    values: Vec<f64>,
    cells: Vec<(usize, usize, Rgb)>,
}

fn known_cells() -> Known {
    let a = strings(&["<b>", "a&b", "row \"3\""]);
    let b = strings(&["x", "y", "z", "w"]);
    #[rustfmt::skip]
    let values = vec![
        2.0, -2.0, 0.0, 1.0,
        -1.0, 0.4, f64::NAN, -0.4,
        0.1, 0.2, 0.3, f64::INFINITY,
    ];
    let known = vec![
        (0, 0, RED_ARM[5]),
        (0, 1, BLUE_ARM[5]),
        (0, 2, WHITE),
        // t = 0.5: halfway between the red anchors 2 and 3.
        (0, 3, [229, 131, 104]),
        (1, 0, [107, 172, 209]),
        (1, 1, RED_ARM[1]),
        (1, 2, NON_FINITE),
        (1, 3, BLUE_ARM[1]),
        (2, 3, NON_FINITE),
    ];
    Known { a, b, values, cells: known }
}

#[test]
fn the_png_has_the_layouts_size_and_the_scales_colours_at_cell_centres() {
    let Known { a, b, values, cells: known } = known_cells();
    let layout: Layout = heatmap::layout(&a, &b, &values, "known", &Prompts::default()).expect("layout");
    let png = Png::decode(&heatmap::heatmap_png(&a, &b, &values, "known", &Prompts::default()).expect("png"));
    assert_eq!((png.width, png.height), (layout.width, layout.height));
    for (i, j, want) in known {
        let (x, y) = layout.cell(i, j).centre();
        assert_eq!(png.at(x, y), want, "cell ({i}, {j}) = {}", values[i * b.len() + j]);
        assert_eq!(heatmap::colour(values[i * b.len() + j], layout.max_abs), want);
    }
    // Cells are solid: every pixel of a cell has its colour.
    let cell = layout.cell(0, 3);
    assert!((cell.y..cell.y + cell.h).all(|y| (cell.x..cell.x + cell.w).all(|x| png.at(x, y) == [229, 131, 104])));
}

#[test]
fn the_svg_is_xml_with_the_pngs_cells_and_escaped_labels() {
    let Known { a, b, values, cells: known } = known_cells();
    let title = "known <&> \"title\"";
    let layout = heatmap::layout(&a, &b, &values, title, &Prompts::default()).expect("layout");
    let png = Png::decode(&heatmap::heatmap_png(&a, &b, &values, title, &Prompts::default()).expect("png"));
    let bytes = heatmap::heatmap_svg(&a, &b, &values, title, &Prompts::default()).expect("svg");
    let text = String::from_utf8(bytes).expect("UTF-8");
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("not XML: {e}\n{text}"));
    let svg = doc.root_element();
    assert_eq!(svg.tag_name().name(), "svg");
    assert_eq!(svg.tag_name().namespace(), Some("http://www.w3.org/2000/svg"));
    assert_eq!((num(svg, "width"), num(svg, "height")), (png.width, png.height));
    assert!(svg.attribute("font-family").is_some_and(|f| f.ends_with("sans-serif")));

    let cells: Vec<_> =
        doc.descendants().filter(|n| n.has_tag_name("rect") && n.attribute("class") == Some("cell")).collect();
    assert_eq!(cells.len(), a.len() * b.len(), "one <rect> per cell");
    for (k, rect) in cells.iter().enumerate() {
        let (i, j) = (k / b.len(), k % b.len());
        let want = layout.cell(i, j);
        let got = (num(*rect, "x"), num(*rect, "y"), num(*rect, "width"), num(*rect, "height"));
        assert_eq!(got, (want.x, want.y, want.w, want.h), "cell ({i}, {j}) geometry");
        let (cx, cy) = want.centre();
        assert_eq!(rect.attribute("fill"), Some(hex(png.at(cx, cy)).as_str()), "cell ({i}, {j}) colour");
    }
    for (i, j, colour) in known {
        assert_eq!(cells[i * b.len() + j].attribute("fill"), Some(hex(colour).as_str()));
    }

    // Labels: the same text and anchor positions as the PNG's, escaped in the file.
    let texts = |class: &str| -> Vec<roxmltree::Node> {
        doc.descendants().filter(|n| n.has_tag_name("text") && n.attribute("class") == Some(class)).collect()
    };
    let rows = texts("row-label");
    assert_eq!(rows.iter().map(|n| n.text().unwrap_or("")).collect::<Vec<_>>(), ["<b>", "a&b", "row \"3\""]);
    for (node, label) in rows.iter().zip(&layout.row_labels) {
        assert_eq!((num(*node, "x"), num(*node, "y")), (label.x, label.y));
        assert_eq!(node.attribute("text-anchor"), Some("end"));
    }
    let cols = texts("col-label");
    assert_eq!(cols.len(), b.len());
    for (node, label) in cols.iter().zip(&layout.col_labels) {
        let want = format!("translate({} {}) rotate(-90)", label.x, label.y);
        assert_eq!(node.attribute("transform"), Some(want.as_str()));
    }
    let titles = texts("title");
    assert_eq!(titles.len(), 1);
    assert_eq!(titles[0].text(), Some(title));
    assert!(text.contains("&lt;b&gt;") && text.contains("a&amp;b") && !text.contains("<b>"), "labels not escaped");
    assert_eq!(texts("tick-label").iter().map(|n| n.text().unwrap()).collect::<Vec<_>>(), ["2", "0", "-2"]);
}

#[test]
fn the_svg_text_is_well_formed_whatever_the_tokens_hold() {
    let a = strings(&["\0", "\u{1b}[31m", "\u{FFFF}", "]]>", "東京"]);
    let b = strings(&["'", "&amp;", "▁x"]);
    let values = vec![1.0; a.len() * b.len()];
    let text =
        String::from_utf8(heatmap::heatmap_svg(&a, &b, &values, "\u{7}", &Prompts::default()).expect("svg")).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("not XML: {e}"));
    let labels: Vec<&str> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("col-label"))
        .map(|n| n.text().unwrap_or(""))
        .collect();
    assert_eq!(labels, ["'", "&amp;", "▁x"]);
}

fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert")
}

fn simattr(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_simattr")).args(args).output().expect("run simattr")
}

#[test]
fn explain_writes_an_svg_heatmap() {
    let dir = tempfile::tempdir().unwrap();
    let (svg_path, json_path) = (dir.path().join("pair.svg"), dir.path().join("pair.json"));
    let model = tiny_model();
    let out = simattr(&[
        "explain",
        "--model",
        model.to_str().unwrap(),
        "--steps",
        "5",
        "--svg",
        svg_path.to_str().unwrap(),
        "--json",
        json_path.to_str().unwrap(),
        "a man plays the guitar",
        "someone plays music",
    ]);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pair.svg"));
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let tokens = |key: &str| -> Vec<String> {
        doc[key].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
    };
    let (ta, tb) = (tokens("tokens_a"), tokens("tokens_b"));

    let text = std::fs::read_to_string(&svg_path).unwrap();
    let svg = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("not XML: {e}"));
    let cells = svg.descendants().filter(|n| n.attribute("class") == Some("cell")).count();
    assert_eq!(cells, ta.len() * tb.len());
    let rows: Vec<&str> =
        svg.descendants().filter(|n| n.attribute("class") == Some("row-label")).map(|n| n.text().unwrap()).collect();
    assert_eq!(rows, ta.iter().map(|t| heatmap::label(t, 16)).collect::<Vec<_>>());
    let title = svg.descendants().find(|n| n.attribute("class") == Some("title")).and_then(|n| n.text());
    assert!(title.is_some_and(|t| t.contains("tiny-bert") && t.contains("score")), "{title:?}");
}

#[test]
fn explain_svg_to_a_bad_path_fails_up_front_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("no such folder").join("pair.svg");
    let json_path = dir.path().join("pair.json");
    let model = tiny_model();
    let out = simattr(&[
        "explain",
        "--model",
        model.to_str().unwrap(),
        "--steps",
        "5",
        "--json",
        json_path.to_str().unwrap(),
        "--svg",
        bad.to_str().unwrap(),
        "a man plays the guitar",
        "someone plays music",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("pair.svg") && stderr.starts_with("error:"), "{stderr}");
    assert!(!bad.exists());
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // A directory in the SVG's place fails the same way.
    let out =
        simattr(&["explain", "--model", model.to_str().unwrap(), "--svg", dir.path().to_str().unwrap(), "a", "b"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("directory"));
}
