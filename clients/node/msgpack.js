'use strict';
// A msgpack decoder, enough to read results the worker stored for jobs sent
// as msgpack: bin becomes a Buffer, ext {ext, data}, 64-bit integers beyond
// Number's safe range a BigInt.

function decode(buf) {
  let pos = 0;
  const u8 = () => buf[pos++];
  const take = (n) => {
    if (pos + n > buf.length) throw new RangeError('msgpack: truncated');
    const b = buf.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const big = (v) => (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
  const num = (n, read) => { const v = read.call(buf, pos); pos += n; return v; };
  const room = (n) => { if (n > buf.length - pos) throw new RangeError('msgpack: truncated'); return n; };
  const arr = (n) => Array.from({ length: room(n) }, () => value());
  const map = (n) => {
    const m = {};
    room(n);
    for (let i = 0; i < n; i++) { const k = value(); m[String(k)] = value(); }
    return m;
  };
  const str = (n) => take(n).toString('utf8');
  const ext = (n) => { const type = num(1, buf.readInt8); return { ext: type, data: Buffer.from(take(n)) }; };
  function value() {
    if (pos >= buf.length) throw new RangeError('msgpack: truncated');
    const b = u8();
    if (b < 0x80) return b;
    if (b < 0x90) return map(b & 0x0f);
    if (b < 0xa0) return arr(b & 0x0f);
    if (b < 0xc0) return str(b & 0x1f);
    if (b >= 0xe0) return b - 0x100;
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return Buffer.from(take(u8()));
      case 0xc5: return Buffer.from(take(num(2, buf.readUInt16BE)));
      case 0xc6: return Buffer.from(take(num(4, buf.readUInt32BE)));
      case 0xc7: return ext(u8());
      case 0xc8: return ext(num(2, buf.readUInt16BE));
      case 0xc9: return ext(num(4, buf.readUInt32BE));
      case 0xca: return num(4, buf.readFloatBE);
      case 0xcb: return num(8, buf.readDoubleBE);
      case 0xcc: return u8();
      case 0xcd: return num(2, buf.readUInt16BE);
      case 0xce: return num(4, buf.readUInt32BE);
      case 0xcf: return big(num(8, buf.readBigUInt64BE));
      case 0xd0: return num(1, buf.readInt8);
      case 0xd1: return num(2, buf.readInt16BE);
      case 0xd2: return num(4, buf.readInt32BE);
      case 0xd3: return big(num(8, buf.readBigInt64BE));
      case 0xd4: return ext(1);
      case 0xd5: return ext(2);
      case 0xd6: return ext(4);
      case 0xd7: return ext(8);
      case 0xd8: return ext(16);
      case 0xd9: return str(u8());
      case 0xda: return str(num(2, buf.readUInt16BE));
      case 0xdb: return str(num(4, buf.readUInt32BE));
      case 0xdc: return arr(num(2, buf.readUInt16BE));
      case 0xdd: return arr(num(4, buf.readUInt32BE));
      case 0xde: return map(num(2, buf.readUInt16BE));
      case 0xdf: return map(num(4, buf.readUInt32BE));
      default: throw new TypeError(`msgpack: unknown byte 0x${b.toString(16)}`);
    }
  }
  const v = value();
  if (pos !== buf.length) throw new TypeError('msgpack: trailing bytes');
  return v;
}

module.exports = { decode };
