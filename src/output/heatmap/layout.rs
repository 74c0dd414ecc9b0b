//! Where everything goes, computed once for both pictures: the PNG and the SVG place the same
//! cells, labels and colour bar at the same pixel positions, with the same colours. Label
//! widths are measured with the font the PNG draws with.
//!
//! The picture is read by a person, so the sizes are chosen for legibility at ~40×40 tokens
//! rather than for compactness.

use super::fonts;
use super::HeatmapError;

/// A few pixels more than a line of text so that neighbouring labels never touch.
pub const CELL: usize = 22;
const MARGIN: usize = 16;
const GAP: usize = 6;
const TITLE_GAP: usize = 12;
const MAX_LABEL_CHARS: usize = 16;
const MAX_TITLE_CHARS: usize = 100;
const MAX_TICK_CHARS: usize = 12;
/// Ends a label that was cut short.
pub const TRUNCATION_MARK: char = '…';
const BAR_GAP: usize = 24;
pub(super) const BAR_W: usize = 20;
const TICK: usize = 5;
/// Refuse absurd sizes instead of attempting multi-gigabyte allocations.
pub const MAX_SIDE: usize = 1 << 14;
const MAX_PIXELS: usize = 1 << 27;

pub type Rgb = [u8; 3];
pub const WHITE: Rgb = [255, 255, 255];
pub(super) const TEXT: Rgb = [30, 30, 30];
/// The labels of a prompt's tokens: part of the text the model read, set apart from the
/// user's own.
pub(super) const PROMPT_TEXT: Rgb = [150, 150, 150];
pub(super) const FRAME: Rgb = [110, 110, 110];
/// Mid grey sits outside the diverging ramp, so missing values can't be mistaken for data.
pub const NON_FINITE: Rgb = [160, 160, 160];

/// ColorBrewer RdBu anchors walked outward from zero. The centre is pure white
/// (RdBu uses #f7f7f7) so that exact zeros vanish into the background.
pub const RED_ARM: [Rgb; 6] =
    [[255, 255, 255], [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31]];
pub const BLUE_ARM: [Rgb; 6] =
    [[255, 255, 255], [209, 229, 240], [146, 197, 222], [67, 147, 195], [33, 102, 172], [5, 48, 97]];

/// Maps a value onto the diverging ramp; `max_abs` is the symmetric half-range. Linear in sRGB
/// between the anchors, as an SVG gradient through the same anchors is.
pub fn colour(v: f64, max_abs: f64) -> Rgb {
    if !v.is_finite() {
        return NON_FINITE;
    }
    if max_abs <= 0.0 {
        return WHITE;
    }
    let t = (v / max_abs).clamp(-1.0, 1.0);
    let arm = if t < 0.0 { &BLUE_ARM } else { &RED_ARM };
    let pos = t.abs() * (arm.len() - 1) as f64;
    let i = (pos.floor() as usize).min(arm.len() - 2);
    let f = pos - i as f64;
    let mut out = [0u8; 3];
    for (c, o) in out.iter_mut().enumerate() {
        let (a, b) = (f64::from(arm[i][c]), f64::from(arm[i + 1][c]));
        *o = (a + (b - a) * f).round().clamp(0.0, 255.0) as u8;
    }
    out
}

/// Formats like C's `%.3g`, which is what researchers expect on a colour bar.
pub fn fmt_g(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v == 0.0 {
        return "0".to_string();
    }
    // Rounding to 3 significant digits first decides the exponent (999.6 -> 1e+03).
    let sci = format!("{v:.2e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..3).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim_zeros(mantissa), exp.unsigned_abs())
    } else {
        let decimals = (2 - exp).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}")).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Control characters, and the two non-characters XML forbids, become U+FFFD (drawn as such,
/// and legal in the SVG); everything else is kept for the fonts to draw.
pub fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() || matches!(c, '\u{FFFE}' | '\u{FFFF}') { '\u{FFFD}' } else { c }).collect()
}

/// The label shown for `s`: cleaned, and cut to `max` characters, the last being
/// [`TRUNCATION_MARK`].
pub fn label(s: &str, max: usize) -> String {
    let cleaned = clean(s);
    if cleaned.chars().count() <= max {
        return cleaned;
    }
    let mut out: String = cleaned.chars().take(max.saturating_sub(1)).collect();
    out.push(TRUNCATION_MARK);
    out
}

/// A rectangle in pixels, top-left origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

impl Rect {
    /// The pixel at the centre (for odd sizes the middle one, for even ones the one right and
    /// below the centre).
    pub fn centre(&self) -> (usize, usize) {
        (self.x + self.w / 2, self.y + self.h / 2)
    }
}

/// Which point of the text its position names, along the direction it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

/// One run of text. Horizontal text runs left to right with its baseline at `y`, `x` being the
/// anchor. Vertical text is turned a quarter anticlockwise: it runs bottom to top with its
/// baseline at `x` (the glyphs stand to its left), `y` being the anchor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text {
    pub text: String,
    pub x: usize,
    pub y: usize,
    pub anchor: Anchor,
    pub vertical: bool,
    /// Advance width in pixels as measured with the renderer's fonts, rounded up.
    pub width: usize,
    /// A prompt token's label, drawn in `PROMPT_TEXT`.
    pub prompt: bool,
}

impl Text {
    /// The colour the label is drawn in.
    pub fn colour(&self) -> Rgb {
        if self.prompt {
            PROMPT_TEXT
        } else {
            TEXT
        }
    }
}

impl Text {
    /// Where the pen starts along the run: the left end of horizontal text, the bottom end of
    /// vertical text.
    pub fn start(&self) -> i64 {
        let (pos, w) = (if self.vertical { self.y } else { self.x } as i64, self.width as i64);
        let back = match self.anchor {
            Anchor::Start => 0,
            Anchor::Middle => w / 2,
            Anchor::End => w,
        };
        if self.vertical {
            pos + back
        } else {
            pos - back
        }
    }
}

/// The tokens of each text that are its prompt's (`Tokenized::prompt_tokens`; empty without
/// one): their labels are drawn grey, and the title says so.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prompts {
    pub a: std::ops::Range<usize>,
    pub b: std::ops::Range<usize>,
}

/// The geometry of one heatmap: built by [`super::layout`], drawn by the PNG and the SVG
/// renderers alike.
#[derive(Clone, Debug)]
pub struct Layout {
    pub width: usize,
    pub height: usize,
    pub rows: usize,
    pub cols: usize,
    /// Half the range of the colour scale: the largest finite |value| (0 when there is none).
    pub max_abs: f64,
    pub title: Option<Text>,
    pub row_labels: Vec<Text>,
    pub col_labels: Vec<Text>,
    /// The cells, `rows`×`cols` of `CELL` pixels.
    pub grid: Rect,
    /// A one-pixel frame drawn under the grid, so that pale cells still show where it ends.
    pub grid_frame: Rect,
    /// The colour bar: +max_abs at the top row, 0 in the middle, -max_abs at the bottom row.
    pub bar: Rect,
    pub bar_frame: Rect,
    /// Tick marks right of the bar and their labels: the top, middle and bottom values (only
    /// the middle "0" when the scale has no range).
    pub ticks: Vec<(Rect, Text)>,
}

impl Layout {
    pub(super) fn new(
        a: &[String],
        b: &[String],
        values: &[f64],
        title: &str,
        prompts: &Prompts,
    ) -> Result<Self, HeatmapError> {
        let (rows, cols) = (a.len(), b.len());
        if rows == 0 || cols == 0 {
            return Err(HeatmapError::Empty);
        }
        if rows.checked_mul(cols) != Some(values.len()) {
            return Err(HeatmapError::ShapeMismatch { rows, cols, len: values.len() });
        }
        let too_big = HeatmapError::TooLarge { rows, cols };
        if rows > MAX_SIDE / CELL || cols > MAX_SIDE / CELL {
            return Err(too_big);
        }
        // Infinities would flatten every finite cell to white, so the scale only sees finite values.
        let max_abs = values.iter().filter(|v| v.is_finite()).fold(0.0_f64, |m, v| m.max(v.abs()));

        let (ascent, descent) = fonts::line_metrics();
        let line = (ascent + descent).ceil() as usize;
        let asc = ascent.round() as usize;
        let text = |s: &str, max: usize, anchor: Anchor, vertical: bool| {
            let text = label(s, max);
            let width = fonts::text_width(&text).ceil() as usize;
            Text { text, x: 0, y: 0, anchor, vertical, width, prompt: false }
        };
        let label_of = |k: usize, t: &String, prompt: &std::ops::Range<usize>, anchor, vertical| Text {
            prompt: prompt.contains(&k),
            ..text(t, MAX_LABEL_CHARS, anchor, vertical)
        };
        let mut row_labels: Vec<Text> =
            a.iter().enumerate().map(|(k, t)| label_of(k, t, &prompts.a, Anchor::End, false)).collect();
        let mut col_labels: Vec<Text> =
            b.iter().enumerate().map(|(k, t)| label_of(k, t, &prompts.b, Anchor::Start, true)).collect();
        let title = match prompts.a.is_empty() && prompts.b.is_empty() {
            true => title.trim().to_string(),
            false => format!("{} (grey labels: the prompt's tokens)", title.trim()),
        };
        let mut title = Some(text(&title, MAX_TITLE_CHARS, Anchor::Middle, false)).filter(|t| !t.text.is_empty());
        let tick_values: Vec<f64> = if max_abs > 0.0 { vec![max_abs, 0.0, -max_abs] } else { vec![0.0] };
        let tick_texts: Vec<Text> =
            tick_values.iter().map(|&v| text(&fmt_g(v), MAX_TICK_CHARS, Anchor::Start, false)).collect();
        let widest = |ts: &[Text]| ts.iter().map(|t| t.width).max().unwrap_or(0);

        let title_w = title.as_ref().map_or(0, |t| t.width);
        let title_h = if title.is_some() { line + TITLE_GAP } else { 0 };
        // At least half a line above the grid so the top colour-bar label fits.
        let col_label_h = widest(&col_labels).max(line / 2);
        let grid_x = MARGIN + widest(&row_labels) + GAP;
        let grid_y = MARGIN + title_h + col_label_h + GAP;
        let grid = Rect { x: grid_x, y: grid_y, w: cols * CELL, h: rows * CELL };
        let bar_x = grid_x + grid.w + BAR_GAP;
        // Keeps the three colour-bar labels apart even for a one-row matrix.
        let bar_h = grid.h.max(3 * line);
        let bar = Rect { x: bar_x, y: grid_y, w: BAR_W, h: bar_h };
        let width = (bar_x + BAR_W + TICK + GAP + widest(&tick_texts) + MARGIN).max(2 * MARGIN + title_w);
        let height = grid_y + bar_h + line / 2 + MARGIN;
        if width > MAX_SIDE || height > MAX_SIDE || width * height > MAX_PIXELS {
            return Err(too_big);
        }

        // Centred over the grid, where the eye is, unless it is wider than the grid.
        if let Some(t) = &mut title {
            let left = (grid_x + grid.w / 2).saturating_sub(title_w / 2).max(MARGIN);
            let left = left.min(width.saturating_sub(MARGIN + title_w));
            (t.x, t.y) = (left + title_w / 2, MARGIN + asc);
        }
        // Each label's line centred on its row or column.
        let inset = (CELL - line) / 2;
        for (i, t) in row_labels.iter_mut().enumerate() {
            (t.x, t.y) = (grid_x - GAP, grid_y + i * CELL + inset + asc);
        }
        for (j, t) in col_labels.iter_mut().enumerate() {
            (t.x, t.y) = (grid_x + j * CELL + inset + asc, grid_y - GAP);
        }
        // A lone "0" goes to the middle, three ticks to the top, middle and bottom.
        let first = if tick_texts.len() == 1 { 1 } else { 0 };
        let ticks = tick_texts
            .into_iter()
            .enumerate()
            .map(|(k, mut t)| {
                let y = grid_y + (k + first) * (bar_h - 1) / 2;
                (t.x, t.y) = (bar_x + BAR_W + TICK + GAP, y + asc - line / 2);
                (Rect { x: bar_x + BAR_W, y, w: TICK, h: 1 }, t)
            })
            .collect();
        Ok(Self {
            width,
            height,
            rows,
            cols,
            max_abs,
            title,
            row_labels,
            col_labels,
            grid,
            grid_frame: Rect { x: grid_x - 1, y: grid_y - 1, w: grid.w + 2, h: grid.h + 2 },
            bar,
            bar_frame: Rect { x: bar_x - 1, y: grid_y - 1, w: BAR_W + 2, h: bar_h + 2 },
            ticks,
        })
    }

    /// Cell (i, j): row i is token i of text a, column j token j of text b.
    pub fn cell(&self, i: usize, j: usize) -> Rect {
        Rect { x: self.grid.x + j * CELL, y: self.grid.y + i * CELL, w: CELL, h: CELL }
    }

    /// The colour of a cell holding `v`.
    pub fn fill(&self, v: f64) -> Rgb {
        colour(v, self.max_abs)
    }

    /// The colour bar at position `t` from its top (0) to its bottom (1): +max_abs to -max_abs.
    pub fn bar_colour(&self, t: f64) -> Rgb {
        if self.max_abs > 0.0 {
            colour(1.0 - 2.0 * t, 1.0)
        } else {
            WHITE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    fn layout(a: &[String], b: &[String], title: &str) -> Layout {
        Layout::new(a, b, &vec![1.0; a.len() * b.len()], title, &Prompts::default()).expect("layout")
    }

    #[test]
    fn dimensions_grow_with_token_count() {
        let dims = |r: usize, c: usize| {
            let l = layout(&toks("a", r), &toks("b", c), "t");
            (l.width, l.height)
        };
        let (w0, h0) = dims(3, 3);
        let (w1, h1) = dims(10, 3);
        let (w2, h2) = dims(3, 10);
        assert!(h1 >= h0 + 7 * 20, "7 extra rows must add height: {h0} -> {h1}");
        assert_eq!(w1, w0, "extra rows with equally long labels must not change width");
        assert!(w2 >= w0 + 7 * 20, "7 extra columns must add width: {w0} -> {w2}");
        assert_eq!(h2, h0);
    }

    #[test]
    fn labels_sit_beside_their_row_and_column_and_inside_the_picture() {
        let a = vec!["xyz".to_string(), "a much longer label".to_string()];
        let b = vec!["ab".to_string(), "c".to_string(), "▁Москва".to_string()];
        let l = layout(&a, &b, "a title");
        let (ascent, descent) = fonts::line_metrics();
        for (i, t) in l.row_labels.iter().enumerate() {
            let cell = l.cell(i, 0);
            assert_eq!(t.x + GAP, cell.x, "row label {i} must end just left of the grid");
            assert!(t.start() >= MARGIN as i64, "row label {i} leaves the picture");
            let (top, bottom) = (t.y as f32 - ascent, t.y as f32 + descent);
            assert!(top >= cell.y as f32 && bottom <= (cell.y + CELL) as f32, "row label {i} leaves its row");
        }
        for (j, t) in l.col_labels.iter().enumerate() {
            let cell = l.cell(0, j);
            assert!(t.vertical && t.y + GAP == cell.y);
            let (left, right) = (t.x as f32 - ascent, t.x as f32 + descent);
            assert!(left >= cell.x as f32 && right <= (cell.x + CELL) as f32, "column label {j} leaves its column");
            let below_title = (MARGIN + ascent.ceil() as usize + descent.ceil() as usize + TITLE_GAP) as i64;
            assert!(t.start() - t.width as i64 >= below_title, "column label {j} runs into the title");
        }
        assert!(l.row_labels[1].width > l.row_labels[0].width + 50, "widths are not measured");
        let title = l.title.as_ref().expect("title");
        assert!(title.start() >= MARGIN as i64 && title.start() as usize + title.width <= l.width - MARGIN);
        assert_eq!(l.ticks.len(), 3);
        assert_eq!(l.ticks.iter().map(|(_, t)| t.text.as_str()).collect::<Vec<_>>(), ["1", "0", "-1"]);
        assert_eq!(l.ticks[0].0.y, l.bar.y);
        assert_eq!(l.ticks[2].0.y, l.bar.y + l.bar.h - 1);
        assert!(l.bar.x + l.bar.w + TICK + GAP + l.ticks[0].1.width <= l.width);
    }

    #[test]
    fn an_all_zero_scale_has_one_tick_in_the_middle() {
        let l = Layout::new(&toks("a", 2), &toks("b", 2), &[0.0; 4], "", &Prompts::default()).expect("layout");
        assert!(l.title.is_none());
        assert_eq!(l.ticks.len(), 1);
        assert_eq!(l.ticks[0].1.text, "0");
        assert_eq!(l.ticks[0].0.y, l.bar.y + (l.bar.h - 1) / 2);
    }

    #[test]
    fn extremes_are_red_and_blue_and_zero_is_white() {
        assert_eq!(colour(2.0, 2.0), RED_ARM[5]);
        assert_eq!(colour(-2.0, 2.0), BLUE_ARM[5]);
        assert_eq!(colour(0.0, 2.0), WHITE);
        assert_eq!(colour(-0.0, 2.0), WHITE);
        assert_eq!(colour(0.4, 2.0), RED_ARM[1], "anchors fall on fifths of the range");
        assert_eq!(colour(1.0, 2.0), [229, 131, 104], "halfway between red anchors 2 and 3");
        assert_eq!(colour(9.0, 2.0), RED_ARM[5], "clamped");
        assert_eq!(colour(f64::NAN, 2.0), NON_FINITE);
        assert_eq!(colour(f64::INFINITY, 2.0), NON_FINITE);
        assert_eq!(colour(1.0, 0.0), WHITE);
        for k in 0..=10 {
            let v = k as f64 / 10.0;
            let (pos, neg) = (colour(v, 1.0), colour(-v, 1.0));
            assert!(pos[0] >= pos[2] && neg[2] >= neg[0], "{v}: {pos:?} {neg:?}");
        }
    }

    #[test]
    fn labels_are_cleaned_and_truncated() {
        assert_eq!(label("playing", 16), "playing");
        assert_eq!(label("abcdefghijklmnopqrstuvwxyz", 16), "abcdefghijklmno…");
        assert_eq!(label("abcdefghijklmnopqrstuvwxyz", 16).chars().count(), 16);
        assert_eq!(label("日本é\n", 16), "日本é\u{FFFD}");
        assert_eq!(label("a\0b\u{FFFF}", 16), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(label("▁Ġ", 1), "…");
    }

    #[test]
    fn shape_mismatch_empty_and_huge_inputs_are_errors() {
        let err = Layout::new(&toks("a", 2), &toks("b", 3), &[0.0; 5], "t", &Prompts::default()).unwrap_err();
        assert!(matches!(err, HeatmapError::ShapeMismatch { rows: 2, cols: 3, len: 5 }), "{err:?}");
        assert!(err.to_string().contains('5') && err.to_string().contains("2×3"));
        assert!(matches!(Layout::new(&[], &toks("b", 3), &[], "t", &Prompts::default()), Err(HeatmapError::Empty)));
        assert!(matches!(Layout::new(&toks("a", 3), &[], &[], "t", &Prompts::default()), Err(HeatmapError::Empty)));
        let huge = toks("a", 20_000);
        let err = Layout::new(&huge, &toks("b", 1), &vec![1.0; 20_000], "t", &Prompts::default()).unwrap_err();
        assert!(matches!(err, HeatmapError::TooLarge { rows: 20_000, cols: 1 }), "{err:?}");
        assert!(err.to_string().contains("16384"), "{err}");
        let err =
            Layout::new(&toks("a", 700), &toks("b", 700), &vec![1.0; 490_000], "t", &Prompts::default()).unwrap_err();
        assert!(matches!(err, HeatmapError::TooLarge { .. }), "{err:?}");
    }

    #[test]
    fn numbers_format_like_printf_g() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (-0.5, "-0.5"),
            (0.123456, "0.123"),
            (12.345, "12.3"),
            (999.6, "1e+03"),
            (1234.5, "1.23e+03"),
            (0.0001234, "0.000123"),
            (0.00001234, "1.23e-05"),
            (-2.5e-7, "-2.5e-07"),
            (99.96, "100"),
            (1e300, "1e+300"),
        ];
        for (v, want) in cases {
            assert_eq!(fmt_g(v), want, "formatting {v}");
        }
    }
}
