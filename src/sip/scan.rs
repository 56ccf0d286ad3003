//! Byte-level scanning shared by the SIP parsers: spans, character classes of RFC 3261 §25.1,
//! LWS skipping, and the comma split that respects quoted strings and `<...>`.
//!
//! Invariant: nothing here indexes a slice without a bound check; every function returns a
//! position inside the slice it was given (or its length).

/// A byte range `[start, end)` inside a message buffer. Messages are at most 65 535 bytes
/// (the largest UDP datagram), so offsets are `u16`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// First byte.
    pub start: u16,
    /// One past the last byte.
    pub end: u16,
}

impl Span {
    /// A span from `usize` offsets; `None` if they do not fit in `u16` or are reversed.
    pub fn new(start: usize, end: usize) -> Option<Span> {
        if start > end {
            return None;
        }
        Some(Span {
            start: u16::try_from(start).ok()?,
            end: u16::try_from(end).ok()?,
        })
    }

    /// The empty span at `at`.
    pub fn empty_at(at: u16) -> Span {
        Span { start: at, end: at }
    }

    /// Length in bytes.
    pub fn len(self) -> usize {
        usize::from(self.end.saturating_sub(self.start))
    }

    /// True when the span covers no byte.
    pub fn is_empty(self) -> bool {
        self.end <= self.start
    }

    /// The bytes of `buf` this span covers (empty if out of range).
    pub fn get(self, buf: &[u8]) -> &[u8] {
        buf.get(usize::from(self.start)..usize::from(self.end))
            .unwrap_or(&[])
    }
}

/// Offset of `sub` inside `base`, when `sub` is a subslice of it.
#[cfg(test)]
pub(crate) fn offset_in(base: &[u8], sub: &[u8]) -> Option<usize> {
    let b = base.as_ptr() as usize;
    let s = sub.as_ptr() as usize;
    if s >= b && s + sub.len() <= b + base.len() {
        Some(s - b)
    } else {
        None
    }
}

/// Span of `sub` inside `base` (`sub` must be a subslice of `base`).
#[inline]
pub(crate) fn span_of(base: &[u8], sub: &[u8]) -> Option<Span> {
    // Address arithmetic only (no dereference): a `sub` outside `base` either wraps below
    // `start` or ends past `base.len()`.
    let start = (sub.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    let end = start.wrapping_add(sub.len());
    if start <= end && end <= base.len() && end <= usize::from(u16::MAX) {
        Some(Span {
            start: start as u16,
            end: end as u16,
        })
    } else {
        None
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Index of the first `needle` in `s`. On x86_64, sixteen bytes per step with SSE2 (part
/// of the x86_64 baseline, so no run-time CPU dispatch); elsewhere eight per step with word
/// arithmetic. For the short slices of a SIP message this costs a fraction of a general
/// `memchr` call's set-up.
#[inline]
pub fn find_byte(needle: u8, s: &[u8]) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_movemask_epi8, _mm_set1_epi8};
        // SAFETY: SSE2 is enabled for this build (the cfg above); these intrinsics only
        // compute on registers.
        let pat = unsafe { _mm_set1_epi8(needle as i8) };
        let at = block::first_hit(
            s,
            0,
            // SAFETY: as above.
            |v| unsafe { _mm_movemask_epi8(_mm_cmpeq_epi8(v, pat)) as u32 },
            |c| c == needle,
        );
        (at < s.len()).then_some(at)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        find_byte_swar(needle, s)
    }
}

/// Index of the first CR, LF or NUL in `s` (what no header text may hold).
#[inline]
pub fn find_cr_lf_nul(s: &[u8]) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use std::arch::x86_64::{_mm_movemask_epi8, _mm_or_si128};
        let at = block::first_hit(
            s,
            0,
            // SAFETY: SSE2 is enabled for this build (the cfg above); these intrinsics only
            // compute on registers.
            |v| unsafe {
                let m = _mm_or_si128(block::eq(v, b'\r'), block::eq(v, b'\n'));
                _mm_movemask_epi8(_mm_or_si128(m, block::eq(v, 0))) as u32
            },
            |c| matches!(c, b'\r' | b'\n' | 0),
        );
        (at < s.len()).then_some(at)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        s.iter().position(|&c| matches!(c, b'\r' | b'\n' | 0))
    }
}

/// True when `s` holds an LWS byte (SP, HTAB, CR or LF), sixteen bytes at a time on x86_64.
#[inline]
pub fn has_lws(s: &[u8]) -> bool {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use std::arch::x86_64::{_mm_movemask_epi8, _mm_or_si128};
        let at = block::first_hit(
            s,
            0,
            // SAFETY: SSE2 is enabled for this build (the cfg above); these intrinsics only
            // compute on registers.
            |v| unsafe {
                let a = _mm_or_si128(block::eq(v, b' '), block::eq(v, b'\t'));
                let b = _mm_or_si128(block::eq(v, b'\r'), block::eq(v, b'\n'));
                _mm_movemask_epi8(_mm_or_si128(a, b)) as u32
            },
            is_lws,
        );
        at < s.len()
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        s.iter().any(|&c| is_lws(c))
    }
}

/// The `"`, `<`, `>` and `,` bytes (the bytes [`CommaSplit`] acts on) among the up to 16
/// bytes of `s` from `at`: bit k of the mask stands for byte `at + k`; the second value is
/// how many bytes the mask covers (0 when `at` is at or past the end).
#[inline(always)]
fn split_special_mask(s: &[u8], at: usize) -> (u32, usize) {
    let len = s.len();
    if at >= len {
        return (0, 0);
    }
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use std::arch::x86_64::{_mm_movemask_epi8, _mm_or_si128};
        // SAFETY: SSE2 is enabled for this build (the cfg above); these intrinsics only
        // compute on registers.
        let specials = |v| unsafe {
            let a = _mm_or_si128(block::eq(v, b'"'), block::eq(v, b'<'));
            let b = _mm_or_si128(block::eq(v, b'>'), block::eq(v, b','));
            (_mm_movemask_epi8(_mm_or_si128(a, b)) as u32) & 0xffff
        };
        if let Some(v) = block::load(s, at) {
            return (specials(v), 16);
        }
        let left = len - at; // 1..=15
        if let Some(v) = len.checked_sub(16).and_then(|last| block::load(s, last)) {
            // the overlapping last block; the bits of bytes before `at` shifted out
            return (specials(v) >> (16 - left), left);
        }
    }
    let end = len.min(at + 16);
    let mut m = 0u32;
    for (k, &c) in s.get(at..end).unwrap_or(&[]).iter().enumerate() {
        if SPLIT_SPECIAL[usize::from(c)] {
            m |= 1 << k;
        }
    }
    (m, end - at)
}

/// Where the element of a comma-separated list that starts at `from` ends: the index of the
/// first `,` outside quoted strings and `<...>`, or `s.len()`. The specials of a block are
/// visited bit by bit, so a block is read once however many of them it holds (a quoted
/// string is jumped over and the scan goes on after it).
fn element_end(s: &[u8], from: usize) -> usize {
    let len = s.len();
    let mut in_angle = false;
    let mut i = from;
    'blocks: while i < len {
        let (mut m, width) = split_special_mask(s, i);
        while m != 0 {
            let j = i + m.trailing_zeros() as usize;
            match s.get(j) {
                Some(b'"') => {
                    i = quoted_end(s, j).unwrap_or(len);
                    continue 'blocks;
                }
                Some(b'<') => in_angle = true,
                Some(b'>') => in_angle = false,
                Some(_) if !in_angle => return j, // ','
                _ => {}
            }
            m &= m - 1;
        }
        i += width.max(1);
    }
    len
}

/// Sixteen-byte block scanning with SSE2 (x86_64 baseline).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
pub(crate) mod block {
    pub(crate) use std::arch::x86_64::__m128i;
    use std::arch::x86_64::{
        _mm_add_epi8, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8,
        _mm_or_si128, _mm_set1_epi8,
    };

    /// Lanes whose byte is in `lo..=hi` (`hi - lo` at most 254): shifted so that `lo` maps
    /// to -128, the range is one signed comparison.
    #[inline(always)]
    pub(crate) fn in_range(v: __m128i, lo: u8, hi: u8) -> __m128i {
        let bias = 0x80u8.wrapping_sub(lo) as i8;
        let limit = (i16::from(hi.saturating_sub(lo)) - 127) as i8;
        // SAFETY: SSE2 is enabled for this build (the module's cfg); these intrinsics only
        // compute on registers.
        unsafe { _mm_cmplt_epi8(_mm_add_epi8(v, _mm_set1_epi8(bias)), _mm_set1_epi8(limit)) }
    }

    /// Lanes whose byte is `c`.
    #[inline(always)]
    pub(crate) fn eq(v: __m128i, c: u8) -> __m128i {
        // SAFETY: as in `in_range`.
        unsafe { _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8)) }
    }

    /// Bit k set when byte k is an ASCII letter, a digit or `-` (the bytes of nearly every
    /// header name; all are token characters).
    #[inline(always)]
    pub(crate) fn alnum_dash_mask(v: __m128i) -> u32 {
        // SAFETY: as in `in_range`.
        unsafe {
            let letter = in_range(_mm_or_si128(v, _mm_set1_epi8(0x20)), b'a', b'z');
            let digit = in_range(v, b'0', b'9');
            let m = _mm_or_si128(_mm_or_si128(letter, digit), eq(v, b'-'));
            _mm_movemask_epi8(m) as u32
        }
    }

    /// Bit k set when byte k is an ASCII letter, a digit, `-`, `.` or `_` (token
    /// characters; the bytes of nearly every parameter value).
    #[inline(always)]
    pub(crate) fn word_mask(v: __m128i) -> u32 {
        // SAFETY: as in `in_range`.
        unsafe {
            let letter = in_range(_mm_or_si128(v, _mm_set1_epi8(0x20)), b'a', b'z');
            let digit = in_range(v, b'0', b'9');
            let dash_dot = in_range(v, b'-', b'.');
            let m = _mm_or_si128(
                _mm_or_si128(letter, digit),
                _mm_or_si128(dash_dot, eq(v, b'_')),
            );
            _mm_movemask_epi8(m) as u32
        }
    }

    /// The 16 bytes of `b` (which must be 16 long) as a vector.
    #[inline(always)]
    fn load16(b: &[u8; 16]) -> __m128i {
        // SAFETY: SSE2 is enabled for this build (the module's cfg); `b` is 16 readable
        // bytes, and `_mm_loadu_si128` has no alignment requirement.
        unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
    }

    /// The 16 bytes of `s` at `at`, if they are all inside `s`.
    #[inline(always)]
    pub(crate) fn load(s: &[u8], at: usize) -> Option<__m128i> {
        let b: &[u8; 16] = s.get(at..at.checked_add(16)?)?.try_into().ok()?;
        Some(load16(b))
    }

    /// Index of the first byte of `s` at or after `from` that `hits` marks (bit k of its
    /// result stands for byte k of the block), or `s.len()`. `one` is the same test on one
    /// byte, for inputs shorter than a block. The last partial block is read as the
    /// overlapping last 16 bytes of `s`, its bits for bytes already seen shifted out.
    #[inline(always)]
    pub(crate) fn first_hit(
        s: &[u8],
        from: usize,
        hits: impl Fn(__m128i) -> u32,
        one: impl Fn(u8) -> bool,
    ) -> usize {
        let len = s.len();
        let mut i = from;
        if let Some(rest) = s.get(from..) {
            let mut blocks = rest.chunks_exact(16);
            for b in &mut blocks {
                let Ok(b) = <&[u8; 16]>::try_from(b) else {
                    break;
                };
                let m = hits(load16(b)) & 0xffff;
                if m != 0 {
                    return i + m.trailing_zeros() as usize;
                }
                i += 16;
            }
        }
        if i >= len {
            return len;
        }
        if len >= 16 {
            let left = len - i; // 1..=15 bytes not yet seen, the last `left` of the block
            return match load(s, len - 16) {
                Some(v) => {
                    let m = (hits(v) & 0xffff) >> (16 - left);
                    if m != 0 {
                        i + m.trailing_zeros() as usize
                    } else {
                        len
                    }
                }
                None => len,
            };
        }
        while let Some(&c) = s.get(i) {
            if one(c) {
                return i;
            }
            i += 1;
        }
        len
    }
}

/// [`find_byte`] with word arithmetic only (eight bytes per step).
#[inline]
pub fn find_byte_swar(needle: u8, s: &[u8]) -> Option<usize> {
    let pat = LO.wrapping_mul(u64::from(needle));
    let mut chunks = s.chunks_exact(8);
    let mut at = 0usize;
    for c in &mut chunks {
        let Ok(w) = <[u8; 8]>::try_from(c) else {
            break;
        };
        let x = u64::from_le_bytes(w) ^ pat;
        // A 0x80 marks a zero byte of `x`; the lowest one is exact (a borrow only spreads
        // upwards), and little-endian order makes it the first in `s`.
        let z = x.wrapping_sub(LO) & !x & HI;
        if z != 0 {
            return Some(at + (z.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == needle)
        .map(|p| at + p)
}

const fn token_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        c += 1;
    }
    t
}

static TOKEN: [bool; 256] = token_table();

/// RFC 3261 `token` characters: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" /
/// "'" / "~".
#[inline]
pub fn is_token(c: u8) -> bool {
    TOKEN.get(usize::from(c)).copied().unwrap_or(false)
}

/// Linear white space inside a header value: SP, HTAB, and the CR LF of a folded line.
pub fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Index of the first non-LWS byte at or after `i`.
pub fn skip_lws(s: &[u8], mut i: usize) -> usize {
    while let Some(&c) = s.get(i) {
        if !is_lws(c) {
            break;
        }
        i += 1;
    }
    i
}

/// `s` without leading and trailing LWS.
pub fn trim_lws(s: &[u8]) -> &[u8] {
    let start = skip_lws(s, 0);
    let mut end = s.len();
    while end > start {
        match s.get(end - 1) {
            Some(&c) if is_lws(c) => end -= 1,
            _ => break,
        }
    }
    s.get(start..end).unwrap_or(&[])
}

/// Index one past the end of a token starting at `i` (== `i` if there is none).
pub fn token_end(s: &[u8], mut i: usize) -> usize {
    while let Some(&c) = s.get(i) {
        if !is_token(c) {
            break;
        }
        i += 1;
    }
    i
}

/// [`token_end`] from the start of `s`, fast for the usual header name: the run of letters,
/// digits and `-` is found a block at a time, then any other token characters one by one.
#[inline]
pub(crate) fn name_end(s: &[u8]) -> usize {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        let p = block::first_hit(
            s,
            0,
            |v| !block::alnum_dash_mask(v),
            |c| !(c.is_ascii_alphanumeric() || c == b'-'),
        );
        if s.get(p).is_some_and(|&c| is_token(c)) {
            token_end(s, p)
        } else {
            p
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        token_end(s, 0)
    }
}

/// Index one past the run of token characters and `:` starting at `i` (a Via parameter
/// value: a token, or an unbracketed IPv6 address). The usual run of letters, digits, `-`,
/// `.` and `_` is found a block at a time, the rest one byte at a time.
#[inline]
pub(crate) fn token_colon_end(s: &[u8], i: usize) -> usize {
    let token_colon = |c: u8| is_token(c) || c == b':';
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    let mut i = block::first_hit(
        s,
        i,
        |v| !block::word_mask(v),
        |c| !(c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_')),
    );
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    let mut i = i;
    while s.get(i).is_some_and(|&c| token_colon(c)) {
        i += 1;
    }
    i
}

/// Copies `src` into `dst` (same length; nothing is copied otherwise). Up to 64 bytes are
/// moved as overlapping fixed-size words inline, which costs a fraction of a `memcpy`
/// call for the short pieces of an edited message (`Via: `, a Max-Forwards value, CRLF).
#[inline(always)]
pub(crate) fn copy_bytes(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if dst.len() != n {
        return;
    }
    fn two<const W: usize>(dst: &mut [u8], src: &[u8], n: usize) {
        let tail = n - W;
        if let (Some(d), Some(s)) = (dst.get_mut(..W), src.get(..W)) {
            d.copy_from_slice(s);
        }
        if let (Some(d), Some(s)) = (dst.get_mut(tail..), src.get(tail..)) {
            if let (Ok(d), Ok(s)) = (<&mut [u8; W]>::try_from(d), <&[u8; W]>::try_from(s)) {
                *d = *s;
            }
        }
    }
    match n {
        0 => {}
        1..=3 => {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = *s;
            }
        }
        4..=7 => two::<4>(dst, src, n),
        8..=15 => two::<8>(dst, src, n),
        16..=32 => two::<16>(dst, src, n),
        33..=64 => {
            // the first and last 32 bytes, each as two 16-byte words
            two::<16>(
                dst.get_mut(..32).unwrap_or(&mut []),
                src.get(..32).unwrap_or(&[]),
                32,
            );
            let tail = n - 32;
            two::<16>(
                dst.get_mut(tail..).unwrap_or(&mut []),
                src.get(tail..).unwrap_or(&[]),
                32,
            );
        }
        _ => dst.copy_from_slice(src),
    }
}

/// Given `s[i] == b'"'`, the index one past the closing quote, honouring `\` escapes.
pub fn quoted_end(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i.checked_add(1)?;
    loop {
        match s.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j = j.checked_add(2)?,
            _ => j += 1,
        }
    }
}

/// Parses an unsigned decimal with at most `max` as value; `None` for empty, non-digit or
/// overlarge input.
pub fn parse_u64(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    if s.len() <= 18 {
        // at most 18 digits: below 10^18, no overflow; the value only grows, so comparing
        // once at the end is the same as after every digit
        let mut v: u64 = 0;
        for &c in s {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + u64::from(d);
        }
        return (v <= max).then_some(v);
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        if v > max {
            return None;
        }
    }
    Some(v)
}

/// True if `s` is 1*DIGIT.
pub fn all_digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

/// The bytes [`CommaSplit`] acts on: `"`, `<`, `>`, `,`.
static SPLIT_SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b',' as usize] = true;
    t
};

/// Iterator over the comma-separated elements of a header value (RFC 3261 §7.3.1), each
/// trimmed of LWS. Commas inside quoted strings and inside `<...>` do not split. Empty
/// elements are skipped.
#[derive(Clone, Debug)]
pub struct CommaSplit<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> CommaSplit<'a> {
    /// Splits `s`.
    pub fn new(s: &'a [u8]) -> Self {
        CommaSplit { s, pos: 0 }
    }
}

impl CommaSplit<'_> {
    /// True when no element is left (cheap, inlined; `next` would return `None`).
    #[inline]
    pub(crate) fn is_done(&self) -> bool {
        self.pos >= self.s.len()
    }

    /// Where the element [`Iterator::next`] would return next starts, without scanning it:
    /// the first byte at or after the current position that is neither LWS nor a comma
    /// (empty elements are skipped, and an element is trimmed of LWS). `None` at the end.
    pub(crate) fn next_start(&self) -> Option<usize> {
        let mut i = self.pos;
        while let Some(&c) = self.s.get(i) {
            if !is_lws(c) && c != b',' {
                return Some(i);
            }
            i += 1;
        }
        None
    }
}

impl<'a> Iterator for CommaSplit<'a> {
    type Item = &'a [u8];

    /// The number of elements [`Iterator::next`] would return, found by the same walk over
    /// `"`, `<`, `>` and `,` without trimming or returning them: an element counts when it
    /// holds a byte that is not LWS.
    fn count(self) -> usize {
        let s = self.s;
        let len = s.len();
        let mut n = 0;
        let mut start = self.pos;
        while start < len {
            let end = element_end(s, start);
            n += usize::from(skip_lws(s, start) < end);
            start = end + 1;
        }
        n
    }

    fn next(&mut self) -> Option<&'a [u8]> {
        let len = self.s.len();
        loop {
            if self.pos >= len {
                return None;
            }
            let start = self.pos;
            let end = element_end(self.s, start);
            self.pos = end.saturating_add(1);
            let elem = trim_lws(self.s.get(start..end).unwrap_or(&[]));
            if !elem.is_empty() {
                return Some(elem);
            }
        }
    }
}

/// Iterator over `;`-separated generic parameters (`name [= value]`) of a parameter list as
/// it follows a header value or URI, yielding `(name, value)` with LWS trimmed and a quoted
/// value returned with its quotes.
#[derive(Clone, Debug)]
pub struct Params<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Params<'a> {
    /// Iterates over `s`, which may start with `;` or directly with the first name.
    pub fn new(s: &'a [u8]) -> Self {
        Params { s, pos: 0 }
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.pos >= self.s.len() {
                return None;
            }
            let start = self.pos;
            let mut i = start;
            while let Some(&c) = self.s.get(i) {
                match c {
                    b'"' => {
                        i = quoted_end(self.s, i).unwrap_or(self.s.len());
                        continue;
                    }
                    b';' => break,
                    _ => i += 1,
                }
            }
            self.pos = i.saturating_add(1);
            let item = trim_lws(self.s.get(start..i.min(self.s.len())).unwrap_or(&[]));
            if item.is_empty() {
                continue;
            }
            return Some(match find_byte(b'=', item) {
                Some(eq) => (
                    trim_lws(item.get(..eq).unwrap_or(&[])),
                    Some(trim_lws(item.get(eq + 1..).unwrap_or(&[]))),
                ),
                None => (item, None),
            });
        }
    }
}

/// The value of parameter `name` (case-insensitive) in `params`: `None` if absent,
/// `Some(None)` for a flag parameter, `Some(Some(v))` otherwise.
pub fn find_param<'a>(params: &'a [u8], name: &[u8]) -> Option<Option<&'a [u8]>> {
    Params::new(params)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// `v` without surrounding double quotes, if it has them.
pub fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_split_respects_quotes_and_angles() {
        let v: Vec<&[u8]> = CommaSplit::new(b"\"a, b\" <sip:x;y=1,2>, <sip:z> ,, c").collect();
        assert_eq!(
            v,
            vec![&b"\"a, b\" <sip:x;y=1,2>"[..], &b"<sip:z>"[..], &b"c"[..]]
        );
    }

    #[test]
    fn name_end_matches_token_end() {
        for c in 0..=255u8 {
            for n in [1usize, 3, 15, 16, 17, 24, 40] {
                for at in 0..n {
                    let mut s = vec![b'X'; n];
                    s[at] = c;
                    assert_eq!(name_end(&s), token_end(&s, 0), "{c:#x} at {at} of {n}");
                    s[n - 1] = b':';
                    assert_eq!(name_end(&s), token_end(&s, 0), "{c:#x} at {at} of {n}");
                }
            }
        }
    }

    #[test]
    fn token_colon_end_matches_scalar() {
        let scalar = |s: &[u8], i: usize| {
            let mut j = i;
            while s.get(j).is_some_and(|&c| is_token(c) || c == b':') {
                j += 1;
            }
            j
        };
        for c in 0..=255u8 {
            for n in [1usize, 3, 15, 16, 17, 24, 33, 40] {
                for at in 0..n {
                    let mut s = vec![b'a'; n];
                    s[at] = c;
                    for from in [0, at.min(2), at, n] {
                        assert_eq!(
                            token_colon_end(&s, from),
                            scalar(&s, from),
                            "{c:#x} at {at} of {n} from {from}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn copy_bytes_copies_every_length() {
        let src: Vec<u8> = (0..80u8).collect();
        for n in 0..=80 {
            let mut dst = vec![0xeeu8; n];
            copy_bytes(&mut dst, &src[..n]);
            assert_eq!(dst, &src[..n], "{n}");
        }
        let mut short = [0u8; 3];
        copy_bytes(&mut short, b"abcd");
        assert_eq!(short, [0; 3]);
    }

    #[test]
    fn lws_found_anywhere() {
        for n in [0usize, 1, 15, 16, 17, 40] {
            for at in 0..n {
                for c in 0..=255u8 {
                    let mut s = vec![b'v'; n];
                    s[at] = c;
                    assert_eq!(has_lws(&s), is_lws(c), "{c} at {at} of {n}");
                }
            }
            assert!(!has_lws(&vec![b'v'; n]));
        }
    }

    #[test]
    fn cr_lf_nul_found_anywhere() {
        for n in [0usize, 1, 15, 16, 17, 40] {
            for at in 0..n {
                for c in [b'\r', b'\n', 0] {
                    let mut s = vec![b'v'; n];
                    s[at] = c;
                    assert_eq!(find_cr_lf_nul(&s), Some(at), "{c} at {at} of {n}");
                }
            }
            assert_eq!(find_cr_lf_nul(&vec![b'v'; n]), None);
        }
    }

    /// The element end as the splitter found it before the block walk: from one special
    /// byte to the next, one byte at a time.
    fn element_end_scalar(s: &[u8], from: usize) -> usize {
        let len = s.len();
        let mut i = from;
        let mut in_angle = false;
        loop {
            while s.get(i).is_some_and(|&c| !SPLIT_SPECIAL[usize::from(c)]) {
                i += 1;
            }
            match s.get(i) {
                None => return len,
                Some(b'"') => {
                    i = quoted_end(s, i).unwrap_or(len);
                    continue;
                }
                Some(b'<') => in_angle = true,
                Some(b'>') => in_angle = false,
                Some(_) if !in_angle => return i,
                Some(_) => {}
            }
            i += 1;
        }
    }

    #[test]
    fn element_end_matches_scalar() {
        let alphabet = b"ab<,>\" ;\\x";
        for n in [0usize, 1, 7, 15, 16, 17, 31, 32, 33, 47, 50] {
            for seed in 0..40usize {
                let hay: Vec<u8> = (0..n)
                    .map(|i| {
                        let k = (i * 7 + seed * 13 + i * i * seed) % (alphabet.len() * 3);
                        alphabet.get(k).copied().unwrap_or(b'z')
                    })
                    .collect();
                for from in 0..=n + 1 {
                    assert_eq!(
                        element_end(&hay, from),
                        element_end_scalar(&hay, from),
                        "{hay:?} from {from}"
                    );
                }
            }
        }
    }

    #[test]
    fn next_start_is_where_the_next_element_starts() {
        for v in [
            &b"<sip:a;lr>, <sip:b;lr>"[..],
            b"a ,  , \"x,y\" <sip:c>",
            b", a,b",
            b"a",
            b"a, ,",
            b"<sip:x,y>, z",
            b"\"unterminated, a",
        ] {
            let mut it = CommaSplit::new(v);
            while it.clone().next().is_some() {
                it.next();
                let want = it
                    .clone()
                    .next()
                    .map(|e| offset_in(v, e).expect("subslice"));
                assert_eq!(it.next_start(), want, "{}", String::from_utf8_lossy(v));
            }
        }
    }

    #[test]
    fn comma_split_count_is_the_number_of_elements() {
        let alphabet = b"a ,<>\"\r\n;";
        for n in 0usize..40 {
            for seed in 0..40usize {
                let v: Vec<u8> = (0..n)
                    .map(|i| {
                        let k =
                            (i * 7 + seed * 13 + i * i * seed + seed * seed) % (alphabet.len() + 3);
                        alphabet.get(k).copied().unwrap_or(b'x')
                    })
                    .collect();
                let mut it = CommaSplit::new(&v);
                loop {
                    assert_eq!(
                        it.clone().count(),
                        it.clone().fold(0, |n, _| n + 1),
                        "{v:?}"
                    );
                    if it.next().is_none() {
                        break;
                    }
                }
            }
        }
    }

    #[test]
    fn params_trim_and_flag() {
        let p: Vec<_> = Params::new(b" ;  tag  = 12 ; lr ;x=\"a;b\"").collect();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0], (&b"tag"[..], Some(&b"12"[..])));
        assert_eq!(p[1], (&b"lr"[..], None));
        assert_eq!(p[2], (&b"x"[..], Some(&b"\"a;b\""[..])));
        assert_eq!(find_param(b";LR", b"lr"), Some(None));
    }

    #[test]
    fn find_byte_matches_position() {
        let hay: Vec<u8> = (0..70u8).map(|i| b'a' + (i % 7)).collect();
        for needle in [b'a', b'c', b'g', b'z', 0x80, 0] {
            for start in 0..hay.len() {
                for end in start..=hay.len() {
                    let s = &hay[start..end];
                    let want = s.iter().position(|&c| c == needle);
                    assert_eq!(find_byte(needle, s), want, "{needle} in {start}..{end}");
                    assert_eq!(
                        find_byte_swar(needle, s),
                        want,
                        "{needle} in {start}..{end}"
                    );
                }
            }
        }
        // bytes whose borrow would fool a looser zero test
        let tricky = [0x01u8, 0x00, 0x81, 0x0a, 0x0b, 0x09, 0x0a, 0xff, 0x0a];
        assert_eq!(find_byte(0x0a, &tricky), Some(3));
        assert_eq!(find_byte(0x00, &tricky), Some(1));
        assert_eq!(find_byte(0xff, &tricky), Some(7));
        assert_eq!(find_byte_swar(0x0a, &tricky), Some(3));
        assert_eq!(find_byte_swar(0x00, &tricky), Some(1));
    }

    #[test]
    fn u64_overflow_is_none() {
        assert_eq!(parse_u64(b"36893488147419103232", u64::MAX), None);
        assert_eq!(parse_u64(b"0068", 255), Some(68));
        assert_eq!(parse_u64(b"", 10), None);
        assert_eq!(
            parse_u64(b"999999999999999999", u64::MAX),
            Some(999_999_999_999_999_999)
        );
        assert_eq!(parse_u64(b"18446744073709551615", u64::MAX), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616", u64::MAX), None);
        assert_eq!(parse_u64(b"256", 255), None);
        assert_eq!(parse_u64(b"1/", 255), None);
        assert_eq!(parse_u64(b"1:", 255), None);
    }
}
