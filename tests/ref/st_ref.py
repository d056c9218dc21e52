"""What sentence-transformers does to embeddings after the model, in numpy:
truncate_dim (then normalize_embeddings), and quantize_embeddings. Checked
against sentence-transformers itself where it is installed (this module's
__main__; CI has no PyTorch)."""
import numpy as np


def truncate(emb, dims, normalize):
    """The first dims components, L2-normalized again when normalize."""
    out = np.asarray(emb, dtype=np.float32)[:, :dims]
    if normalize:
        n = np.linalg.norm(out.astype(np.float64), axis=1, keepdims=True)
        out = (out / np.where(n > 0, n, 1)).astype(np.float32)
    return out


def quantize(emb, precision, ranges=None):
    """int8/uint8: floor((x - min) / ((max - min) / 255)) clipped to 0..255,
    in float32 (a step of 0 taken as 1), less 128 for int8, with min and max
    per component from ranges [2, dims] or from emb's rows; binary/ubinary:
    the signs packed 8 a byte, high bit first, less 128 for binary."""
    emb = np.asarray(emb, dtype=np.float32)
    if precision in ("binary", "ubinary"):
        packed = np.packbits(emb > 0, axis=1)
        return (packed.astype(np.int16) - 128).astype(np.int8) if precision == "binary" else packed
    if ranges is None:
        ranges = np.vstack((emb.min(axis=0), emb.max(axis=0)))
    ranges = np.asarray(ranges, dtype=np.float32).reshape(2, -1)
    steps = (ranges[1] - ranges[0]) / np.float32(255)
    steps = np.where(steps == 0, np.float32(1), steps)
    q = np.clip(np.floor((emb - ranges[0]) / steps), 0, 255)
    return (q - 128).astype(np.int8) if precision == "int8" else q.astype(np.uint8)


if __name__ == "__main__":     # python st_ref.py, where sentence-transformers is installed
    from sentence_transformers.util.quantization import quantize_embeddings
    rng = np.random.default_rng(0)
    e = rng.standard_normal((50, 64)).astype(np.float32)
    for p in ("int8", "uint8", "binary", "ubinary"):
        np.testing.assert_array_equal(quantize(e, p), quantize_embeddings(e, precision=p))
        r = np.vstack((e.min(axis=0) - 0.1, e.max(axis=0) + 0.1))
        if p in ("int8", "uint8"):
            np.testing.assert_array_equal(quantize(e, p, r), quantize_embeddings(e, precision=p, ranges=r))
    print("st_ref: quantize agrees with sentence-transformers", flush=True)
