//! Token-by-token attribution heatmaps, as PNG images and as SVG.
//!
//! One [`Layout`] places the cells, labels and colour bar for both. Labels are measured and,
//! in the PNG, drawn with real fonts (see [`fonts`]): a compiled-in DejaVu Sans subset for
//! Latin, Greek, Cyrillic and the tokenizers' markers (`▁`, `Ġ`), the system's fonts for the
//! rest (CJK), antialiased by ab_glyph. The colour scale, the layout and the picture limits
//! are ours.

use std::fmt;

pub mod fonts;
mod layout;
mod raster;
mod svg;

pub use layout::{
    colour, fmt_g, label, Anchor, Layout, Prompts, Rect, Rgb, Text, BLUE_ARM, CELL, MAX_SIDE, NON_FINITE, RED_ARM,
    TRUNCATION_MARK, WHITE,
};

#[derive(Debug)]
pub enum HeatmapError {
    ShapeMismatch {
        rows: usize,
        cols: usize,
        len: usize,
    },
    Empty,
    /// The picture would exceed 16384 pixels on a side (roughly 700 tokens) or 2^27 pixels.
    TooLarge {
        rows: usize,
        cols: usize,
    },
    Encode(png::EncodingError),
}

impl fmt::Display for HeatmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShapeMismatch { rows, cols, len } => write!(
                f,
                "attribution matrix has {len} values, but {rows} tokens of text a \
                 × {cols} tokens of text b need {rows}×{cols}"
            ),
            Self::Empty => write!(f, "cannot draw a heatmap: one of the token lists is empty"),
            Self::TooLarge { rows, cols } => write!(
                f,
                "a heatmap of {rows}×{cols} tokens would be larger than {MAX_SIDE} pixels on a side \
                 (or 2^27 pixels in all)"
            ),
            Self::Encode(e) => write!(f, "could not encode the heatmap as PNG: {e}"),
        }
    }
}

impl std::error::Error for HeatmapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Encode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<HeatmapError> for crate::error::Error {
    fn from(e: HeatmapError) -> Self {
        crate::error::Error::Heatmap(e.to_string())
    }
}

impl From<png::EncodingError> for HeatmapError {
    fn from(e: png::EncodingError) -> Self {
        Self::Encode(e)
    }
}

/// Where [`heatmap_png`] and [`heatmap_svg`] put everything for these arguments (the same
/// checks, the same errors).
pub fn layout(
    tokens_a: &[String],
    tokens_b: &[String],
    values: &[f64],
    title: &str,
    prompts: &Prompts,
) -> Result<Layout, HeatmapError> {
    Layout::new(tokens_a, tokens_b, values, title, prompts)
}

/// Renders `values` (row-major, `tokens_a.len()` rows × `tokens_b.len()` columns; row i = token i of text a,
/// column j = token j of text b) as a PNG heatmap and returns the encoded PNG bytes.
///
/// Images that would exceed 16384 px on a side (roughly 700 tokens) are refused with
/// `HeatmapError::TooLarge`. The labels of `prompts`' tokens are drawn grey.
pub fn heatmap_png(
    tokens_a: &[String],
    tokens_b: &[String],
    values: &[f64],
    title: &str,
    prompts: &Prompts,
) -> Result<Vec<u8>, HeatmapError> {
    let layout = layout(tokens_a, tokens_b, values, title, prompts)?;
    let canvas = raster::draw(&layout, values);

    let mut png_bytes = Vec::new();
    // Both sides are below MAX_SIDE, so the casts cannot truncate.
    let mut encoder = png::Encoder::new(&mut png_bytes, canvas.w as u32, canvas.h as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&canvas.px)?;
    writer.finish()?;
    Ok(png_bytes)
}

/// The same heatmap as [`heatmap_png`], same layout and colours, as an SVG document (UTF-8).
pub fn heatmap_svg(
    tokens_a: &[String],
    tokens_b: &[String],
    values: &[f64],
    title: &str,
    prompts: &Prompts,
) -> Result<Vec<u8>, HeatmapError> {
    let layout = layout(tokens_a, tokens_b, values, title, prompts)?;
    Ok(svg::render(&layout, tokens_a, tokens_b, values).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    fn decode(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("valid png");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("frame");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        buf.truncate(info.line_size * info.height as usize);
        (info.width as usize, info.height as usize, buf)
    }

    /// Renders and returns the centre pixel of every cell, row-major.
    fn cell_centres(a: &[String], b: &[String], v: &[f64]) -> Vec<Rgb> {
        let (w, _, px) = decode(&heatmap_png(a, b, v, "t", &Prompts::default()).expect("render"));
        let layout = layout(a, b, v, "t", &Prompts::default()).expect("layout");
        let mut out = Vec::new();
        for i in 0..a.len() {
            for j in 0..b.len() {
                let (x, y) = layout.cell(i, j).centre();
                let k = (y * w + x) * 3;
                out.push([px[k], px[k + 1], px[k + 2]]);
            }
        }
        out
    }

    /// Darkness relative to white (Rec. 709 luma), 0 = white.
    fn intensity(c: Rgb) -> f64 {
        255.0 - (0.2126 * f64::from(c[0]) + 0.7152 * f64::from(c[1]) + 0.0722 * f64::from(c[2]))
    }

    #[test]
    fn colour_scale_is_symmetric_about_zero() {
        // The extremes are lopsided (4 vs -2); ±2 must still get mirrored shades.
        let v = [4.0, -2.0, 2.0, 0.0, -1.0, 1.0];
        let px = cell_centres(&toks("a", 2), &toks("b", 3), &v);
        for (pos, neg) in [(px[2], px[1]), (px[5], px[4])] {
            assert!(pos[0] > pos[2] && neg[2] > neg[0], "{pos:?} / {neg:?}");
            let (ip, in_) = (intensity(pos), intensity(neg));
            assert!(ip > 30.0 && (ip - in_).abs() < 20.0, "asymmetric: +{ip} vs -{in_}");
        }
        assert!(intensity(px[1]) > intensity(px[4]) + 30.0, "-2 must be darker than -1");
        assert!(intensity(px[0]) > intensity(px[2]) + 50.0, "+4 must be darker than +2");
        assert_eq!(px[3], WHITE);
    }

    #[test]
    fn all_zero_matrix_is_white_and_non_finite_is_grey() {
        let px = cell_centres(&toks("a", 1), &toks("b", 2), &[0.0, -0.0]);
        assert!(px.iter().all(|c| *c == WHITE), "{px:?}");
        let v = [f64::NAN, f64::INFINITY, 1.0, f64::NEG_INFINITY];
        let px = cell_centres(&toks("a", 2), &toks("b", 2), &v);
        for c in [px[0], px[1], px[3]] {
            assert_eq!(c, NON_FINITE);
        }
        // The infinities must not swallow the scale: 1.0 is still the full-red extreme.
        assert_eq!(px[2], RED_ARM[5]);
    }

    #[test]
    fn forty_by_forty_is_compact_and_cells_distinct() {
        let a: Vec<String> = (0..40).map(|i| format!("subword_token_{i:02}_long")).collect();
        // Alternating signs with growing magnitude: no two neighbours share a value.
        let v: Vec<f64> = (0..1600).map(|k| (k % 40 + 1) as f64 * (-1.0_f64).powi(k)).collect();
        let (w, h, _) = decode(&heatmap_png(&a, &a, &v, "40 x 40", &Prompts::default()).expect("render"));
        assert!(w < 3000 && h < 3000, "{w}x{h}");
        let px = cell_centres(&a, &a, &v);
        assert!(px.windows(2).take(39).all(|p| p[0] != p[1]), "neighbouring cells share a colour");
    }

    #[test]
    fn labels_are_drawn_next_to_their_row_and_column() {
        let a = vec![String::new(), "xyz".to_string()];
        let b = vec!["ab".to_string(), String::new()];
        let v = [1.0, 0.0, 0.0, -1.0];
        let (w, _, px) = decode(&heatmap_png(&a, &b, &v, "", &Prompts::default()).expect("render"));
        let l = layout(&a, &b, &v, "", &Prompts::default()).expect("layout");
        let dark_in =
            |x0: usize, y0: usize, x1: usize, y1: usize| (y0..y1).any(|y| (x0..x1).any(|x| px[(y * w + x) * 3] < 100));
        let gy = l.grid.y;
        assert!(!dark_in(0, gy, l.grid.x - 1, gy + CELL), "empty row label drew something");
        assert!(dark_in(0, gy + CELL, l.grid.x - 1, gy + 2 * CELL), "row label missing");
        assert!(dark_in(l.grid.x, 0, l.grid.x + CELL, gy - 1), "column label missing");
        let second_col = dark_in(l.grid.x + CELL, 0, l.grid.x + 2 * CELL, gy - 1);
        assert!(!second_col, "empty column label drew something");
    }

    #[test]
    fn text_is_antialiased() {
        let a = vec!["Москва".to_string()];
        let (w, _, px) = decode(&heatmap_png(&a, &a, &[1.0], "", &Prompts::default()).expect("render"));
        let l = layout(&a, &a, &[1.0], "", &Prompts::default()).expect("layout");
        let row = l.cell(0, 0);
        let greys: Vec<u8> = (row.y..row.y + row.h)
            .flat_map(|y| (0..l.grid.x - 1).map(move |x| (y * w + x) * 3))
            .map(|k| px[k])
            .filter(|&c| c != 255)
            .collect();
        assert!(greys.iter().any(|&c| c < 80), "no solid ink");
        assert!(greys.iter().any(|&c| c > 100 && c < 230), "no intermediate coverage");
    }

    #[test]
    fn colour_bar_runs_from_red_through_white_to_blue() {
        let (a, b) = (toks("a", 8), toks("b", 2));
        let l = layout(&a, &b, &[0.5; 16], "t", &Prompts::default()).expect("layout");
        let (w, _, px) = decode(&heatmap_png(&a, &b, &[0.5; 16], "t", &Prompts::default()).expect("render"));
        let at = |y: usize| {
            let k = (y * w + l.bar.x + l.bar.w / 2) * 3;
            [px[k], px[k + 1], px[k + 2]]
        };
        let (top, bottom) = (at(l.bar.y), at(l.bar.y + l.bar.h - 1));
        assert_eq!((top, bottom), (RED_ARM[5], BLUE_ARM[5]));
        let mid = at(l.bar.y + l.bar.h / 2);
        assert!(mid.iter().all(|&c| c > 235), "{mid:?}");
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let long = "x".repeat(500);
        let a: Vec<String> = ["", "日本語", "e\u{301}", "\n\t\0", &long, "🦀"].map(String::from).to_vec();
        let b: Vec<String> = ["", "Ġhello", "▁world"].map(String::from).to_vec();
        let v = [
            f64::MAX,
            f64::MIN,
            1e-310,
            f64::NAN,
            -0.0,
            1e308,
            f64::INFINITY,
            0.0,
            -1e-300,
            3.0,
            -3.0,
            1.0,
            7.0,
            8.0,
            9.0,
            1.0,
            2.0,
            3.0,
        ];
        let title = "title\nwith 🦀 and ".repeat(50);
        let (w, h, _) = decode(&heatmap_png(&a, &b, &v, &title, &Prompts::default()).expect("render"));
        assert!(w > 0 && h > 0 && w < 3000);
        let svg = String::from_utf8(heatmap_svg(&a, &b, &v, &title, &Prompts::default()).expect("svg")).expect("utf-8");
        assert!(!svg.contains('\0') && svg.contains(&format!(r#"width="{w}" height="{h}""#)));
        let one = [String::from("x")];
        assert!(heatmap_png(&one, &one, &[f64::NAN], "", &Prompts::default()).is_ok());
        assert!(heatmap_svg(&one, &one, &[f64::NAN], "", &Prompts::default()).is_ok());
    }

    #[test]
    fn a_prompts_labels_are_grey_and_the_title_says_so() {
        let (a, b) = (toks("a", 3), toks("b", 2));
        let prompts = Prompts { a: 0..2, b: 1..2 };
        let l = layout(&a, &b, &[0.5; 6], "t", &prompts).expect("layout");
        let grey = |labels: &[Text]| labels.iter().map(|t| t.colour() == layout::PROMPT_TEXT).collect::<Vec<_>>();
        assert_eq!(grey(&l.row_labels), [true, true, false]);
        assert_eq!(grey(&l.col_labels), [false, true]);
        assert!(l.title.as_ref().is_some_and(|t| t.text.contains("prompt")), "{:?}", l.title);
        let plain = layout(&a, &b, &[0.5; 6], "t", &Prompts::default()).expect("layout");
        assert!(plain.row_labels.iter().chain(&plain.col_labels).all(|t| t.colour() == layout::TEXT));
        assert_eq!(plain.title.map(|t| t.text), Some("t".to_string()));
        let svg = String::from_utf8(heatmap_svg(&a, &b, &[0.5; 6], "t", &prompts).expect("svg")).expect("utf-8");
        assert_eq!(svg.matches("row-label prompt").count(), 2);
        assert_eq!(svg.matches("col-label prompt").count(), 1);
        // The PNG draws a grey label's pixels in grey: no pixel darker than it around row 0's label.
        let (w, _, px) = decode(&heatmap_png(&a, &b, &[0.5; 6], "t", &prompts).expect("render"));
        let label = &l.row_labels[0];
        let darkest = (label.y.saturating_sub(8)..label.y + 2)
            .flat_map(|y| (label.start().max(0) as usize..label.x).map(move |x| (y * w + x) * 3))
            .map(|i| px[i])
            .min()
            .unwrap();
        assert!(darkest >= layout::PROMPT_TEXT[0] - 1, "a prompt label drawn darker ({darkest}) than its grey");
    }
}
