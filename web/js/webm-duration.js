// MediaRecorder writes WebM as a live stream: its Segment Info has no Duration, so players report
// the length as Infinity and cannot seek. withDuration() writes one into the recorded bytes (the
// approach of the fix-webm-duration package, written here): the EBML Duration element goes into
// Info, and the sizes of Info (and of the Segment, when it is known) grow by its length.
// Matroska/WebM elements: https://www.matroska.org/technical/elements.html

const ID = { EBML: 0x1a45dfa3, SEGMENT: 0x18538067, INFO: 0x1549a966, TIMESTAMP_SCALE: 0x2ad7b1, DURATION: 0x4489 };

// An EBML variable-length integer at pos: {value, length}. An element ID keeps its length marker;
// a size drops it, and a size of all ones ("unknown", a live stream's Segment) reads as -1.
function readVint(bytes, pos, isId = false) {
  const first = bytes[pos];
  let length = 1;
  while (length <= 8 && !(first & (0x80 >> (length - 1)))) length++;
  if (length > 8 || pos + length > bytes.length) throw new Error("not an EBML number");
  let value = isId ? first : first & (0xff >> length);
  let unknown = !isId && value === 0xff >> length;
  for (let i = 1; i < length; i++) {
    value = value * 256 + bytes[pos + i];
    unknown = unknown && bytes[pos + i] === 0xff;
  }
  return { value: unknown ? -1 : value, length };
}

// A size as an EBML number, `length` bytes long where it fits (else the fewest that hold it).
function sizeBytes(value, length) {
  while (value >= 2 ** (7 * length) - 1) length++;
  const out = new Uint8Array(length);
  for (let i = length - 1, v = value; i >= 0; i--, v = Math.floor(v / 256)) out[i] = v % 256;
  out[0] |= 0x80 >> (length - 1);
  return out;
}

// The element at pos: its id, where its size field sits and how long it is, its data and size.
function element(bytes, pos) {
  const id = readVint(bytes, pos, true);
  const size = readVint(bytes, pos + id.length);
  const data = pos + id.length + size.length;
  return { id: id.value, sizeAt: pos + id.length, sizeLength: size.length, size: size.value, data };
}

function readUint(bytes, pos, n) {
  let v = 0;
  for (let i = 0; i < n; i++) v = v * 256 + bytes[pos + i];
  return v;
}

// The WebM bytes with their Duration set to durationMs, or null where the layout is not the one
// MediaRecorder writes (EBML header, Segment, Info before any element of unknown size).
export function withDuration(bytes, durationMs) {
  try {
    const header = element(bytes, 0);
    if (header.id !== ID.EBML) return null;
    const segment = element(bytes, header.data + header.size);
    if (segment.id !== ID.SEGMENT) return null;
    const end = segment.size < 0 ? bytes.length : segment.data + segment.size;
    for (let pos = segment.data; pos < end; ) {
      const e = element(bytes, pos);
      if (e.id === ID.INFO) return setDuration(bytes, segment, e, durationMs);
      if (e.size < 0) return null;
      pos = e.data + e.size;
    }
  } catch {
    return null; // not WebM as expected: the recording is kept as it is
  }
  return null;
}

function setDuration(bytes, segment, info, durationMs) {
  let scale = 1e6; // TimestampScale: ns per timestamp tick (1 ms unless the file says otherwise)
  let duration = null;
  for (let pos = info.data; pos < info.data + info.size; ) {
    const e = element(bytes, pos);
    if (e.id === ID.TIMESTAMP_SCALE) scale = readUint(bytes, e.data, e.size);
    if (e.id === ID.DURATION) duration = e;
    pos = e.data + e.size;
  }
  const ticks = (durationMs * 1e6) / scale; // Duration is a float, in TimestampScale ticks
  if (duration && (duration.size === 4 || duration.size === 8)) {
    const out = bytes.slice();
    const view = new DataView(out.buffer, duration.data, duration.size);
    if (duration.size === 8) view.setFloat64(0, ticks);
    else view.setFloat32(0, ticks);
    return out;
  }
  if (duration) return null;
  const added = new Uint8Array(11); // ID 0x4489, size 8, float64 big-endian
  added.set([0x44, 0x89, 0x88]);
  new DataView(added.buffer).setFloat64(3, ticks);
  const infoSize = sizeBytes(info.size + added.length, info.sizeLength);
  const grown = added.length + infoSize.length - info.sizeLength;
  const infoEnd = info.data + info.size;
  const parts =
    segment.size < 0
      ? [bytes.subarray(0, info.sizeAt)]
      : [
          bytes.subarray(0, segment.sizeAt),
          sizeBytes(segment.size + grown, segment.sizeLength),
          bytes.subarray(segment.data, info.sizeAt),
        ];
  parts.push(infoSize, bytes.subarray(info.data, infoEnd), added, bytes.subarray(infoEnd));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}

// The recorded blob with its duration written in (the blob itself where that cannot be done).
export async function fixDuration(blob, durationMs) {
  const fixed = withDuration(new Uint8Array(await blob.arrayBuffer()), durationMs);
  return fixed ? new Blob([fixed], { type: blob.type }) : blob;
}
