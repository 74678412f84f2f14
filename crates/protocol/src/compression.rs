//! Kafka's record batch compression codecs (attribute bits 0-2).
//!
//! Ottla stores batches as the producer sent them and only decompresses where a rule
//! needs the records (see DESIGN.md), so this module is mostly about *reading* what real
//! clients write — safely, because the bytes come straight off the network:
//!
//! - every codec is decoded in a streaming fashion into a buffer that never grows past the
//!   caller's `max_output`, so a zip bomb costs at most `max_output` bytes and is abandoned
//!   as soon as it exceeds it ([`CompressionError::TooLarge`]);
//! - sizes announced by the data itself (snappy's length header, zstd's content size and
//!   window, lz4's block sizes) are checked against limits before anything is allocated;
//! - nothing panics on any input: garbage is [`CompressionError::Corrupt`].
//!
//! What the clients produce, and therefore what [`decompress`] accepts:
//!
//! | codec  | wire format                                                              |
//! |--------|--------------------------------------------------------------------------|
//! | gzip   | gzip container (RFC 1952), one member; several members are accepted too  |
//! | snappy | raw snappy block (librdkafka, kafka-python) *or* snappy-java's           |
//! |        | "xerial" stream framing (the Java client), told apart by its magic       |
//! | lz4    | LZ4 frame format (Java's `KafkaLZ4BlockOutputStream`, librdkafka)        |
//! | zstd   | standard zstd frame(s)                                                   |

use std::io::{self, Read, Write};

/// Codec of a batch, by Kafka's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn from_id(id: i16) -> Option<Self> {
        Some(match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return None,
        })
    }
    pub fn id(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// Why [`decompress`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompressionError {
    /// The data decompresses (or claims to decompress) to more than the caller's limit,
    /// which is carried here. Decoding stops as soon as this is known, so the limit is
    /// also the most memory the attempt used for output.
    #[error("decompressed size exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// The input is not valid data for the codec: truncated, garbage, a failed checksum,
    /// or a frame needing more decoder memory than the limit allows.
    #[error("{} data is corrupt: {reason}", codec_name(.codec))]
    Corrupt { codec: Compression, reason: String },
}

fn codec_name(codec: &Compression) -> &'static str {
    match codec {
        Compression::None => "uncompressed",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    }
}

fn corrupt(codec: Compression, reason: impl ToString) -> CompressionError {
    CompressionError::Corrupt {
        codec,
        reason: reason.to_string(),
    }
}

/// snappy-java's stream magic: `0x82 "SNAPPY" 0x00`. It cannot start a valid raw snappy
/// block (that would announce a 10 626-byte block whose first element is a copy, with
/// nothing before it to copy from), which is why snappy-java itself — and so the Java
/// consumer — uses it to tell its framing from a raw block, and so can we.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic, then `version: int32` and `minimum compatible version: int32` (both 1).
const XERIAL_HEADER_LEN: usize = 16;

/// Upper bound of snappy's expansion: the best element is a 3-byte copy of 64 bytes
/// (21.3x), so a block can never decode to more than 22 times its size. A length header
/// claiming more is corrupt, and rejecting it up front means a 10-byte block cannot make
/// us allocate what it claims.
const SNAPPY_MAX_EXPANSION: usize = 22;

/// LZ4 frame magic (little-endian on the wire: `04 22 4D 18`).
const LZ4_FRAME_MAGIC: u32 = 0x184D_2204;
const LZ4_FLG_CONTENT_SIZE: u8 = 0x08;
const LZ4_FLG_DICT_ID: u8 = 0x01;
const LZ4_FLG_CONTENT_CHECKSUM: u8 = 0x04;
const LZ4_FLG_BLOCK_CHECKSUM: u8 = 0x10;
const LZ4_BLOCK_UNCOMPRESSED: u32 = 0x8000_0000;

/// The smallest zstd window we always accept: 8 MiB (`windowLog` 23) is what zstd levels
/// up to 19 use for streams of unknown size — Java's zstd-jni streams never announce a
/// size — so any realistic client batch decodes whatever the limit.
const ZSTD_MIN_WINDOW_LOG: u32 = 23;
/// The largest: libzstd's default limit, which is also what Java consumers (zstd-jni)
/// accept; only levels 20-22 produce such windows.
const ZSTD_MAX_WINDOW_LOG: u32 = 27;

/// Size of the stack buffer streaming decoders write into before we copy to the output.
const READ_CHUNK: usize = 32 * 1024;

/// Decompress `input`, which is a batch's records payload written with `codec`, into at
/// most `max_output` bytes.
///
/// Never produces, nor reserves room for, more than `max_output` bytes of output; data
/// that would decode to more gets [`CompressionError::TooLarge`] (with `max_output`) as
/// soon as that is known. Exactly `max_output` bytes is accepted. Decoder-internal
/// buffers are bounded separately: lz4 at most ~12 MiB (a 4 MiB block in, twice that
/// out in linked mode), zstd at its window, which we cap at `max(8 MiB, max_output)` rounded
/// up to a power of two and never above 128 MiB — a frame declaring a larger window is
/// refused as corrupt instead of allocated.
///
/// Empty input is corrupt for every codec but `None`: no client writes an empty
/// compressed payload (even zero records compress to a header).
pub fn decompress(
    codec: Compression,
    input: &[u8],
    max_output: usize,
) -> Result<Vec<u8>, CompressionError> {
    match codec {
        Compression::None if input.len() > max_output => {
            Err(CompressionError::TooLarge(max_output))
        }
        Compression::None => Ok(input.to_vec()),
        _ if input.is_empty() => Err(corrupt(codec, "empty input")),
        // Java's GZIPInputStream reads concatenated members, so we do too.
        Compression::Gzip => read_bounded(
            codec,
            flate2::read::MultiGzDecoder::new(input),
            input.len(),
            max_output,
        ),
        Compression::Snappy => {
            if input.starts_with(&XERIAL_MAGIC) {
                decompress_xerial(input, max_output)
            } else {
                let mut out = Vec::new();
                append_raw_snappy(input, &mut out, max_output)?;
                Ok(out)
            }
        }
        Compression::Lz4 => {
            // One decoder per frame: `lz4_flex` reports end-of-stream at the end of each
            // frame, so a single decoder would silently drop any frame after the first.
            // Clients write one frame, but the format allows concatenation (the `lz4`
            // tool decodes it), and accepting it beats dropping data.
            let mut out = Vec::with_capacity(input.len().min(max_output));
            for frame in split_lz4_frames(input)? {
                let decoder = lz4_flex::frame::FrameDecoder::new(frame);
                read_bounded_into(codec, decoder, &mut out, max_output)?;
            }
            Ok(out)
        }
        Compression::Zstd => {
            // Streaming rather than `zstd::bulk`: the bulk API allocates the content size
            // the frame header claims. The streaming decoder only allocates its window,
            // which `window_log_max` bounds before any allocation happens.
            let mut decoder =
                zstd::stream::read::Decoder::with_buffer(input).map_err(|e| corrupt(codec, e))?;
            decoder
                .window_log_max(zstd_window_log_max(max_output))
                .map_err(|e| corrupt(codec, e))?;
            read_bounded(codec, decoder, input.len(), max_output)
        }
    }
}

/// Compress `input` the way Kafka clients do, for tests, benchmarks and batches the
/// broker writes itself: gzip at the default level (as Java's `GZIPOutputStream`), raw
/// snappy (as librdkafka; Java consumers accept it: snappy-java falls back to a raw
/// block when the xerial magic is absent), an LZ4 frame with independent 64 KiB blocks
/// and no checksums (as `KafkaLZ4BlockOutputStream`), and a zstd frame at level 3
/// (Kafka's default level).
///
/// # Panics
///
/// Only if `input` exceeds a codec's absolute maximum (4 GiB for snappy), which no
/// record batch can reach.
pub fn compress(codec: Compression, input: &[u8]) -> Vec<u8> {
    match codec {
        Compression::None => input.to_vec(),
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder
                .write_all(input)
                .expect("writing to a Vec cannot fail");
            encoder.finish().expect("writing to a Vec cannot fail")
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(input)
            .expect("input within snappy's 4 GiB limit"),
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            encoder
                .write_all(input)
                .expect("writing to a Vec cannot fail");
            encoder.finish().expect("writing to a Vec cannot fail")
        }
        Compression::Zstd => {
            zstd::stream::encode_all(input, 3).expect("zstd compression into a Vec cannot fail")
        }
    }
}

/// Drain a streaming decoder into a `Vec` that never holds, or reserves, more than
/// `max_output` bytes. `size_hint` (the input size) only seeds the initial capacity.
fn read_bounded<R: Read>(
    codec: Compression,
    reader: R,
    size_hint: usize,
    max_output: usize,
) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::with_capacity(size_hint.min(max_output));
    read_bounded_into(codec, reader, &mut out, max_output)?;
    Ok(out)
}

/// Append everything `reader` produces to `out`, failing with `TooLarge` as soon as
/// `out` would exceed `max_output`. Decoded bytes pass through a fixed stack buffer, so
/// the only growing allocation is `out` itself, and that is capped.
fn read_bounded_into<R: Read>(
    codec: Compression,
    mut reader: R,
    out: &mut Vec<u8>,
    max_output: usize,
) -> Result<(), CompressionError> {
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(codec, e)),
        };
        if n > max_output - out.len() {
            return Err(CompressionError::TooLarge(max_output));
        }
        reserve_capped(out, n, max_output);
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Make room for `additional` more bytes, growing geometrically (so the copy stays
/// amortised O(n)) but never past `max_output`, which `Vec`'s own doubling would ignore.
/// The caller has checked that `out.len() + additional <= max_output`.
fn reserve_capped(out: &mut Vec<u8>, additional: usize, max_output: usize) {
    let needed = out.len() + additional;
    if needed <= out.capacity() {
        return;
    }
    let target = needed.max(out.capacity().saturating_mul(2).min(max_output));
    out.reserve_exact(target - out.len());
}

/// Decode one raw snappy block and append it to `out`, keeping `out` within
/// `max_output`. The block's length header is checked for plausibility and against the
/// limit before the output is allocated.
fn append_raw_snappy(
    block: &[u8],
    out: &mut Vec<u8>,
    max_output: usize,
) -> Result<(), CompressionError> {
    let codec = Compression::Snappy;
    let len = snap::raw::decompress_len(block).map_err(|e| corrupt(codec, e))?;
    if len > block.len().saturating_mul(SNAPPY_MAX_EXPANSION) {
        return Err(corrupt(
            codec,
            format!(
                "a {}-byte block cannot decode to the {len} bytes it claims",
                block.len()
            ),
        ));
    }
    if len > max_output - out.len() {
        return Err(CompressionError::TooLarge(max_output));
    }
    let start = out.len();
    reserve_capped(out, len, max_output);
    out.resize(start + len, 0);
    match snap::raw::Decoder::new().decompress(block, &mut out[start..]) {
        Ok(n) if n == len => Ok(()),
        Ok(n) => Err(corrupt(
            codec,
            format!("block decoded to {n} bytes, header said {len}"),
        )),
        Err(e) => Err(corrupt(codec, e)),
    }
}

/// snappy-java's framing (`SnappyOutputStream`, used by the Java producer): the 16-byte
/// header, then chunks of `[int32 BE length][raw snappy block]`. Like snappy-java we
/// also accept a header repeated between chunks (concatenated streams).
fn decompress_xerial(input: &[u8], max_output: usize) -> Result<Vec<u8>, CompressionError> {
    let codec = Compression::Snappy;
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        if rest.starts_with(&XERIAL_MAGIC) {
            if rest.len() < XERIAL_HEADER_LEN {
                return Err(corrupt(codec, "truncated snappy-java stream header"));
            }
            rest = &rest[XERIAL_HEADER_LEN..];
            continue;
        }
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(corrupt(codec, "truncated snappy-java chunk length"));
        };
        let len = i32::from_be_bytes(*len);
        let chunk_len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= tail.len())
            .ok_or_else(|| {
                corrupt(
                    codec,
                    format!(
                        "snappy-java chunk length {len} with {} bytes left",
                        tail.len()
                    ),
                )
            })?;
        let (chunk, tail) = tail.split_at(chunk_len);
        append_raw_snappy(chunk, &mut out, max_output)?;
        rest = tail;
    }
    Ok(out)
}

/// Split `input` into its LZ4 frames by walking their structure (header, block sizes,
/// end mark) without decoding.
///
/// `lz4_flex`'s `FrameDecoder` treats input that ends at a block boundary, or inside
/// the frame header, as a clean end of stream, so a truncated payload would silently
/// decode to a prefix of the records. Kafka's own reader rejects that; this walk makes
/// us do the same, and also rejects trailing bytes that are not another frame. Header
/// fields (version, reserved bits, block size, header checksum) and block contents are
/// left to the decoder. Only standard frames are accepted: no client writes the legacy
/// or skippable kinds.
fn split_lz4_frames(input: &[u8]) -> Result<Vec<&[u8]>, CompressionError> {
    fn take<'a>(rest: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], CompressionError> {
        if n > rest.len() {
            return Err(corrupt(
                Compression::Lz4,
                format!("truncated frame: {what}"),
            ));
        }
        let (bytes, tail) = rest.split_at(n);
        *rest = tail;
        Ok(bytes)
    }
    fn take_u32(rest: &mut &[u8], what: &str) -> Result<u32, CompressionError> {
        let b = take(rest, 4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    let mut frames = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let frame_start = input.len() - rest.len();
        let magic = take_u32(&mut rest, "magic")?;
        if magic != LZ4_FRAME_MAGIC {
            return Err(corrupt(
                Compression::Lz4,
                format!("bad frame magic {magic:#010x}"),
            ));
        }
        let flg = take(&mut rest, 2, "descriptor")?[0];
        let mut optional = 1; // header checksum
        if flg & LZ4_FLG_CONTENT_SIZE != 0 {
            optional += 8;
        }
        if flg & LZ4_FLG_DICT_ID != 0 {
            optional += 4;
        }
        take(&mut rest, optional, "descriptor")?;
        loop {
            let block = take_u32(&mut rest, "block size (no end mark)")?;
            if block == 0 {
                if flg & LZ4_FLG_CONTENT_CHECKSUM != 0 {
                    take(&mut rest, 4, "content checksum")?;
                }
                break;
            }
            take(
                &mut rest,
                (block & !LZ4_BLOCK_UNCOMPRESSED) as usize,
                "block data",
            )?;
            if flg & LZ4_FLG_BLOCK_CHECKSUM != 0 {
                take(&mut rest, 4, "block checksum")?;
            }
        }
        frames.push(&input[frame_start..input.len() - rest.len()]);
    }
    Ok(frames)
}

/// `ceil(log2(max_output))`, clamped to the window range we accept (see the constants).
fn zstd_window_log_max(max_output: usize) -> u32 {
    let ceil_log2 = usize::BITS - max_output.saturating_sub(1).leading_zeros();
    ceil_log2.clamp(ZSTD_MIN_WINDOW_LOG, ZSTD_MAX_WINDOW_LOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// Compressible but not trivial: repeated text with a varying counter, ~200 KiB, so
    /// lz4 and xerial framing span several blocks.
    fn sample() -> Vec<u8> {
        let mut data = Vec::new();
        let mut i = 0u32;
        while data.len() < 200 * 1024 {
            data.extend_from_slice(format!("record {i} payload, key=user-{}; ", i % 97).as_bytes());
            i += 1;
        }
        data
    }

    /// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn round_trip_every_codec() {
        let data = sample();
        for codec in CODECS {
            let compressed = compress(codec, &data);
            if codec != Compression::None {
                assert!(
                    compressed.len() < data.len() / 2,
                    "{codec:?} did not compress"
                );
            }
            // Exactly the limit is allowed.
            assert_eq!(
                decompress(codec, &compressed, data.len()).unwrap(),
                data,
                "{codec:?}"
            );
            // One byte less is not.
            assert_eq!(
                decompress(codec, &compressed, data.len() - 1),
                Err(CompressionError::TooLarge(data.len() - 1)),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn empty_payload_round_trips() {
        for codec in CODECS {
            let compressed = compress(codec, &[]);
            assert_eq!(
                decompress(codec, &compressed, 0).unwrap(),
                Vec::<u8>::new(),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn lz4_uses_kafka_frame_layout() {
        let frame = compress(Compression::Lz4, b"hello hello hello hello");
        assert_eq!(&frame[..4], &[0x04, 0x22, 0x4D, 0x18], "LZ4 frame magic");
        // FLG: version 01, independent blocks, no checksums, no content size; BD: 64 KiB.
        assert_eq!(frame[4], 0b0110_0000);
        assert_eq!(frame[5], 0x40);
    }

    /// Java producers write snappy-java's framing; build it by hand from its spec.
    #[test]
    fn snappy_xerial_framing_is_decoded() {
        let data = sample();
        let (first, second) = data.split_at(data.len() / 3);
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&1i32.to_be_bytes()); // version
        framed.extend_from_slice(&1i32.to_be_bytes()); // minimum compatible version
        for part in [first, second] {
            let block = snap::raw::Encoder::new().compress_vec(part).unwrap();
            framed.extend_from_slice(&(block.len() as i32).to_be_bytes());
            framed.extend_from_slice(&block);
        }
        assert_eq!(
            decompress(Compression::Snappy, &framed, data.len()).unwrap(),
            data
        );
        assert_eq!(
            decompress(Compression::Snappy, &framed, data.len() - 1),
            Err(CompressionError::TooLarge(data.len() - 1))
        );

        // A repeated header between chunks (concatenated streams) is skipped.
        let mut concatenated = framed.clone();
        concatenated.extend_from_slice(&framed);
        let mut twice = data.clone();
        twice.extend_from_slice(&data);
        assert_eq!(
            decompress(Compression::Snappy, &concatenated, twice.len()).unwrap(),
            twice
        );

        // A chunk length running past the end, a negative one, or a cut-off length field.
        let mut long = framed.clone();
        long.truncate(framed.len() - 1);
        assert!(matches!(
            decompress(Compression::Snappy, &long, usize::MAX),
            Err(CompressionError::Corrupt { .. })
        ));
        let mut negative = framed[..XERIAL_HEADER_LEN].to_vec();
        negative.extend_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            decompress(Compression::Snappy, &negative, usize::MAX),
            Err(CompressionError::Corrupt { .. })
        ));
        let mut cut = framed[..XERIAL_HEADER_LEN].to_vec();
        cut.extend_from_slice(&[0, 0]);
        assert!(matches!(
            decompress(Compression::Snappy, &cut, usize::MAX),
            Err(CompressionError::Corrupt { .. })
        ));
        // Header only: a valid, empty stream.
        assert_eq!(
            decompress(Compression::Snappy, &framed[..XERIAL_HEADER_LEN], 0).unwrap(),
            Vec::<u8>::new()
        );
    }

    /// Concatenate `copies` copies of `unit` compressed (gzip members, lz4 and zstd
    /// frames, xerial chunks all concatenate), so a 100 MiB bomb can be built from a
    /// 4 MiB compression — debug-build encoders are too slow to compress 100 MiB in a test.
    fn bomb(codec: Compression, unit: &[u8], copies: usize) -> Vec<u8> {
        let compressed = compress(codec, unit);
        match codec {
            Compression::Snappy => {
                let mut framed = XERIAL_MAGIC.to_vec();
                framed.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
                for _ in 0..copies {
                    framed.extend_from_slice(&(compressed.len() as i32).to_be_bytes());
                    framed.extend_from_slice(&compressed);
                }
                framed
            }
            _ => compressed.repeat(copies),
        }
    }

    #[test]
    fn zip_bombs_stop_at_the_limit() {
        const MIB: usize = 1024 * 1024;
        let zeros = vec![0u8; 4 * MIB];
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let bomb = bomb(codec, &zeros, 25); // 100 MiB of zeros
            assert!(
                bomb.len() < 5 * MIB,
                "{codec:?}: bomb is {} bytes",
                bomb.len()
            );
            assert_eq!(
                decompress(codec, &bomb, MIB),
                Err(CompressionError::TooLarge(MIB)),
                "{codec:?}"
            );
            // The same stream is fine with a limit that fits it: the error above is
            // about size, not about the concatenation.
            let small = self::bomb(codec, &zeros[..MIB / 4], 2);
            assert_eq!(
                decompress(codec, &small, MIB).unwrap().len(),
                MIB / 2,
                "{codec:?}"
            );
        }
    }

    /// A raw snappy block, hand-encoded: one literal zero then `copies` 64-byte copies at
    /// offset 1 — the densest snappy there is (~21x).
    fn dense_snappy_zeros(copies: usize) -> Vec<u8> {
        let mut block = Vec::new();
        let mut n = (1 + 64 * copies) as u64; // uncompressed length, a varint
        while n >= 0x80 {
            block.push((n as u8) | 0x80);
            n >>= 7;
        }
        block.push(n as u8);
        block.extend_from_slice(&[0x00, 0x00]); // literal of length 1: "\0"
        for _ in 0..copies {
            block.extend_from_slice(&[(63 << 2) | 2, 1, 0]); // copy 64 bytes from offset 1
        }
        block
    }

    /// 100 MiB from under 5 MiB of valid snappy.
    #[test]
    fn raw_snappy_bomb_is_refused_before_allocating() {
        let copies = 100 * 1024 * 1024 / 64;
        let block = dense_snappy_zeros(copies);
        assert!(block.len() < 5 * 1024 * 1024);
        assert_eq!(
            decompress(Compression::Snappy, &block, 1024 * 1024),
            Err(CompressionError::TooLarge(1024 * 1024))
        );
        // It is valid snappy: with room for it, it decodes to zeros.
        let small_copies = 1000;
        assert_eq!(
            decompress(
                Compression::Snappy,
                &dense_snappy_zeros(small_copies),
                usize::MAX
            )
            .unwrap(),
            vec![0u8; 1 + 64 * small_copies]
        );
    }

    #[test]
    fn implausible_snappy_length_is_corrupt_not_allocated() {
        // A 6-byte block claiming 4 GiB - 1.
        let block = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(matches!(
            decompress(Compression::Snappy, &block, usize::MAX),
            Err(CompressionError::Corrupt {
                codec: Compression::Snappy,
                ..
            })
        ));
    }

    /// A zstd frame whose header claims an enormous content size (single-segment, so the
    /// window is the content size) must be refused without allocating it.
    #[test]
    fn zstd_huge_declared_window_is_refused() {
        // Magic; frame header descriptor: 8-byte content size (0xC0) + single segment
        // (0x20); the content size; one raw last block of 3 bytes (1 | 0 << 1 | 3 << 3).
        let frame = |content_size: u64| {
            let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD, 0xE0];
            frame.extend_from_slice(&content_size.to_le_bytes());
            frame.extend_from_slice(&[0x19, 0x00, 0x00]);
            frame.extend_from_slice(b"abc");
            frame
        };
        // Hand-built correctly: with its true size it decodes.
        assert_eq!(
            decompress(Compression::Zstd, &frame(3), 1024).unwrap(),
            b"abc"
        );
        // Claiming 1 TiB, it is refused up front (libzstd: "Frame requires too much
        // memory for decoding"), even though the limit is generous.
        let result = decompress(Compression::Zstd, &frame(1 << 40), 1 << 30);
        assert!(
            matches!(&result, Err(CompressionError::Corrupt { codec: Compression::Zstd, reason })
                if reason.contains("too much memory")),
            "{result:?}"
        );
        // Claiming 64 MiB, over the 8 MiB window a 1 MiB limit allows: refused too.
        let result = decompress(Compression::Zstd, &frame(64 << 20), 1 << 20);
        assert!(
            matches!(&result, Err(CompressionError::Corrupt { reason, .. })
                if reason.contains("too much memory")),
            "{result:?}"
        );
    }

    #[test]
    fn zstd_window_limit_scales_with_max_output() {
        assert_eq!(zstd_window_log_max(0), ZSTD_MIN_WINDOW_LOG);
        assert_eq!(zstd_window_log_max(1024 * 1024), ZSTD_MIN_WINDOW_LOG);
        assert_eq!(zstd_window_log_max((1 << 24) + 1), 25);
        assert_eq!(zstd_window_log_max(1 << 25), 25);
        assert_eq!(zstd_window_log_max(usize::MAX), ZSTD_MAX_WINDOW_LOG);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let data = sample();
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            assert!(
                decompress(codec, &[], usize::MAX).is_err(),
                "{codec:?}: empty input"
            );
            for seed in 1..50u64 {
                let garbage = noise(1 + (seed as usize * 37) % 300, seed);
                assert!(
                    decompress(codec, &garbage, 1 << 20).is_err(),
                    "{codec:?}: seed {seed}"
                );
            }
            let valid = compress(codec, &data[..4096]);
            // Every strict prefix of a valid stream is truncated, hence an error.
            for cut in 1..valid.len() {
                assert!(
                    decompress(codec, &valid[..cut], 1 << 20).is_err(),
                    "{codec:?}: prefix of {cut}/{} bytes accepted",
                    valid.len()
                );
            }
            // Trailing garbage after a complete stream is an error too.
            let mut trailing = valid.clone();
            trailing.extend_from_slice(b"garbage!");
            assert!(
                decompress(codec, &trailing, 1 << 20).is_err(),
                "{codec:?}: trailing bytes"
            );
            // Bit flips may or may not be detectable (lz4 and zstd carry no checksum
            // here), but must never panic or exceed the limit.
            for i in 0..valid.len() {
                let mut flipped = valid.clone();
                flipped[i] ^= 1 << (i % 8);
                if let Ok(out) = decompress(codec, &flipped, 8192) {
                    assert!(out.len() <= 8192);
                }
            }
        }
    }
}
