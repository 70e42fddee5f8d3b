/* The codec's integer page decoding in C: optional, ``kronicler.db.codec`` is the reference.
 *
 * A column page of an ordered chunk is cut into ~16 row blocks (``codec.encode_blocks``), each
 * a NARROW or DELTA page whose byte planes are compressed one by one (``_squeeze_planes``). The
 * Python decoder spends ~100 us of interpreter and numpy call overhead per block (a dozen small
 * numpy passes, a ``struct`` parse per plane), ~1.5 ms for a chunk's start page of which the
 * decompression itself is ~0.4 ms. :func:`decode` walks the whole page once instead: it parses
 * the block table and every block head, hands each compressed part to the caller's zstandard
 * ``decompress`` (python-zstandard's, so no second zstd is linked), and writes the values
 * straight into the caller's array: byte planes gathered, widened, zig-zag undone and summed
 * (DELTA) in one pass per block.
 *
 * Forms: RAW, CONST, NARROW, NARROW_PLANES, DELTA, DELTA_PLANES, and BLOCKS of them. Any other
 * form (id tables, counter ids, parent references, pages in start order) makes it return None
 * and the caller decodes the page in Python; bytes that do not add up raise ValueError, as the
 * Python decoder's checks do (the caller turns both into CorruptPageError). The values are
 * those of the Python decoder by construction: each is computed as a 64-bit pattern (numpy's
 * int64 arithmetic wraps the same way) and its low bytes stored, as numpy's integer casts do.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the page layout is little-endian: other hosts use the pure-Python decoder"
#endif

/* codec ids: kronicler/db/codec.py */
#define C_RAW 0
#define C_CONST 1
#define C_NARROW 2
#define C_DELTA 3
#define C_BLOCKS 6
#define C_NARROW_PLANES 10
#define C_DELTA_PLANES 11
#define HEAD 8 /* codec, flags, 2 pad bytes, item count (u32) */

typedef struct {
    PyObject *decompress; /* callable(frame, max_output_size=) -> bytes */
    PyObject *kwnames;    /* ("max_output_size",) */
    PyObject *held[64];   /* decompressed parts of the block being decoded */
    int n_held;
} Ctx;

static PyObject *k_kwnames;

static int
bad(const char *msg)
{
    PyErr_SetString(PyExc_ValueError, msg);
    return -1;
}

static uint32_t
u32_at(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t
u64_at(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void
release(Ctx *c)
{
    for (int i = 0; i < c->n_held; i++)
        Py_DECREF(c->held[i]);
    c->n_held = 0;
}

/* ``len`` bytes at ``p`` decompressed by the caller's zstandard (``max_output_size=size``);
 * the result is held until the block is done. NULL with an error set on failure. */
static const uint8_t *
inflate(Ctx *c, const uint8_t *p, Py_ssize_t len, Py_ssize_t size, Py_ssize_t *got)
{
    if (c->n_held >= (int)(sizeof c->held / sizeof c->held[0])) {
        bad("too many compressed parts in one block");
        return NULL;
    }
    PyObject *frame = PyMemoryView_FromMemory((char *)p, len, PyBUF_READ);
    if (frame == NULL)
        return NULL;
    PyObject *limit = PyLong_FromSsize_t(size);
    if (limit == NULL) {
        Py_DECREF(frame);
        return NULL;
    }
    PyObject *args[3] = {NULL, frame, limit};
    PyObject *raw = PyObject_Vectorcall(c->decompress, args + 1,
                                        1 | PY_VECTORCALL_ARGUMENTS_OFFSET, c->kwnames);
    Py_DECREF(frame);
    Py_DECREF(limit);
    if (raw == NULL)
        return NULL;
    if (!PyBytes_Check(raw)) {
        Py_DECREF(raw);
        bad("decompress did not return bytes");
        return NULL;
    }
    c->held[c->n_held++] = raw;
    *got = PyBytes_GET_SIZE(raw);
    return (const uint8_t *)PyBytes_AS_STRING(raw);
}

static int
good_width(int w)
{
    return w == 1 || w == 2 || w == 4 || w == 8;
}

/* The ``width`` byte planes of ``m`` values each (``_unsqueeze_planes``): a mask byte, the
 * byte length of each plane, then the planes, each compressed when its mask bit is set. */
static int
split_planes(Ctx *c, const uint8_t *body, Py_ssize_t blen, int width, Py_ssize_t m,
             const uint8_t *planes[8])
{
    Py_ssize_t pos = 1 + 4 * (Py_ssize_t)width;
    if (blen < pos)
        return bad("byte plane table is cut short");
    unsigned mask = body[0];
    if (mask >> width)
        return bad("byte planes of a column page do not add up");
    for (int i = 0; i < width; i++) {
        Py_ssize_t length = (Py_ssize_t)u32_at(body + 1 + 4 * i);
        if (length > blen - pos)
            return bad("byte plane runs past its page");
        if (mask >> i & 1) {
            Py_ssize_t got;
            planes[i] = inflate(c, body + pos, length, m, &got);
            if (planes[i] == NULL)
                return -1;
            if (got != m)
                return bad("byte plane holds the wrong number of bytes");
        }
        else {
            if (length != m)
                return bad("byte plane holds the wrong number of bytes");
            planes[i] = body + pos;
        }
        pos += length;
    }
    if (pos != blen)
        return bad("byte planes of a column page do not add up");
    return 0;
}

/* Planes of a shuffled run that is stored (or compressed) as one piece (NARROW, DELTA):
 * ``width`` planes of ``m`` bytes one after the other; at least that many bytes are needed. */
static int
whole_planes(Ctx *c, const uint8_t *body, Py_ssize_t blen, int flags, int width, Py_ssize_t m,
             const uint8_t *planes[8])
{
    Py_ssize_t need = m * width;
    const uint8_t *raw = body;
    Py_ssize_t got = blen;
    if (flags & 1) {
        raw = inflate(c, body, blen, need, &got);
        if (raw == NULL)
            return -1;
    }
    if (got < need)
        return bad("column page holds fewer bytes than its values need");
    for (int i = 0; i < width; i++)
        planes[i] = raw + (Py_ssize_t)i * m;
    return 0;
}

/* values[r] = the little-endian value whose byte i is planes[i][r] */
static void
gather(const uint8_t *const planes[8], int width, Py_ssize_t m, uint64_t *dst)
{
    switch (width) {
    case 1:
        for (Py_ssize_t r = 0; r < m; r++)
            dst[r] = planes[0][r];
        break;
    case 2:
        for (Py_ssize_t r = 0; r < m; r++)
            dst[r] = (uint64_t)planes[0][r] | (uint64_t)planes[1][r] << 8;
        break;
    case 4:
        for (Py_ssize_t r = 0; r < m; r++)
            dst[r] = (uint64_t)planes[0][r] | (uint64_t)planes[1][r] << 8 |
                     (uint64_t)planes[2][r] << 16 | (uint64_t)planes[3][r] << 24;
        break;
    default:
        for (Py_ssize_t r = 0; r < m; r++) {
            uint64_t v = 0;
            for (int i = 0; i < 8; i++)
                v |= (uint64_t)planes[i][r] << (8 * i);
            dst[r] = v;
        }
    }
}

/* dst[0] = first, then the running sum of the zig-zag steps in dst[1..n-1] */
static void
undelta(uint64_t first, Py_ssize_t n, uint64_t *dst)
{
    uint64_t acc = first;
    dst[0] = first;
    for (Py_ssize_t r = 1; r < n; r++) {
        uint64_t z = dst[r];
        acc += (z >> 1) ^ (0 - (z & 1)); /* two's complement: wraps as numpy's int64 does */
        dst[r] = acc;
    }
}

/* One page that is not cut into blocks: ``n`` values into ``dst`` as 64-bit patterns.
 * 1: done; 0: a form this loop leaves to Python; -1: error set. */
static int
plain(Ctx *c, const uint8_t *p, Py_ssize_t len, Py_ssize_t n, uint64_t *dst)
{
    if (len < HEAD)
        return bad("column page is shorter than its head");
    int codec = p[0], flags = p[1], width = flags >> 4;
    if ((Py_ssize_t)u32_at(p + 4) != n)
        return bad("column page holds another number of values than its header says");
    const uint8_t *body = p + HEAD;
    Py_ssize_t blen = len - HEAD;
    const uint8_t *planes[8];
    int rc = 1;
    switch (codec) {
    case C_CONST:
        if (blen < 8)
            return bad("constant page is cut short");
        {
            uint64_t v = u64_at(body);
            for (Py_ssize_t r = 0; r < n; r++)
                dst[r] = v;
        }
        break;
    case C_RAW:
        if (blen / 8 < n)
            return bad("raw page is cut short");
        memcpy(dst, body, (size_t)n * 8);
        break;
    case C_NARROW:
    case C_NARROW_PLANES:
        if (!good_width(width))
            return bad("column page has no valid byte width");
        if (codec == C_NARROW)
            rc = whole_planes(c, body, blen, flags, width, n, planes);
        else
            rc = split_planes(c, body, blen, width, n, planes);
        if (rc < 0)
            break;
        gather(planes, width, n, dst);
        rc = 1;
        break;
    case C_DELTA:
    case C_DELTA_PLANES:
        if (!good_width(width))
            return bad("column page has no valid byte width");
        if (blen < 8)
            return bad("delta page is cut short");
        if (n == 0)
            return 0; /* only the encoder's empty page: left to Python */
        if (codec == C_DELTA)
            rc = whole_planes(c, body + 8, blen - 8, flags, width, n - 1, planes);
        else
            rc = split_planes(c, body + 8, blen - 8, width, n - 1, planes);
        if (rc < 0)
            break;
        gather(planes, width, n - 1, dst + 1);
        undelta(u64_at(body), n, dst);
        rc = 1;
        break;
    case C_BLOCKS:
        return bad("a block of a column page is cut into blocks again");
    default:
        return 0;
    }
    release(c);
    return rc;
}

/* A blocks page (``codec.encode_blocks``, checked as ``codec._block_table`` does). */
static int
blocks(Ctx *c, const uint8_t *p, Py_ssize_t len, Py_ssize_t n, uint64_t *dst)
{
    if (len < HEAD + 4)
        return bad("block table of a column page is cut short");
    Py_ssize_t count = (Py_ssize_t)u32_at(p + HEAD);
    Py_ssize_t at = HEAD + 4;
    if (count > (len - at) / 8)
        return bad("block table of a column page is cut short");
    Py_ssize_t pos = at + 8 * count, prev = 0;
    for (Py_ssize_t b = 0; b < count; b++) {
        Py_ssize_t end = (Py_ssize_t)u32_at(p + at + 4 * b);
        Py_ssize_t length = (Py_ssize_t)u32_at(p + at + 4 * (count + b));
        if (end <= prev)
            return bad("block table of a column page is not ascending");
        if (end > n || length > len - pos)
            return bad("block table of a column page does not add up");
        int rc = plain(c, p + pos, length, end - prev, dst + prev);
        if (rc <= 0)
            return rc;
        pos += length;
        prev = end;
    }
    if (count == 0 || prev != n || pos != len)
        return bad("block table of a column page does not add up");
    return 1;
}

/* store the low ``itemsize`` bytes of each value, as numpy's integer casts do */
static void
narrow_into(const uint64_t *src, Py_ssize_t n, Py_ssize_t itemsize, void *out)
{
    switch (itemsize) {
    case 1:
        for (Py_ssize_t r = 0; r < n; r++)
            ((uint8_t *)out)[r] = (uint8_t)src[r];
        break;
    case 2:
        for (Py_ssize_t r = 0; r < n; r++)
            ((uint16_t *)out)[r] = (uint16_t)src[r];
        break;
    default:
        for (Py_ssize_t r = 0; r < n; r++)
            ((uint32_t *)out)[r] = (uint32_t)src[r];
    }
}

PyDoc_STRVAR(decode_doc,
"decode(page, out, decompress) -> True | None\n\n"
"Decode the integer column page ``page`` into ``out`` (a writable contiguous array of its\n"
"item count, item size 1, 2, 4 or 8): True when done, None for a form left to the Python\n"
"decoder (``out`` may then hold anything). ``decompress(frame, max_output_size=n)`` is a\n"
"zstandard decompressor's method. Bytes that do not add up raise ValueError.");

static PyObject *
decode(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "decode(page, out, decompress)");
        return NULL;
    }
    Py_buffer page, out;
    if (PyObject_GetBuffer(args[0], &page, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&page);
        return NULL;
    }
    Ctx c = {args[2], k_kwnames, {NULL}, 0};
    PyObject *result = NULL;
    const uint8_t *p = (const uint8_t *)page.buf;
    Py_ssize_t itemsize = out.itemsize, n = 0;
    uint64_t *dst = NULL;
    int rc = -1;
    if (page.len < HEAD) {
        bad("column page is shorter than its head");
        goto done;
    }
    n = (Py_ssize_t)u32_at(p + 4);
    if (!(itemsize == 1 || itemsize == 2 || itemsize == 4 || itemsize == 8) ||
        out.len != n * itemsize) {
        PyErr_SetString(PyExc_ValueError, "out must hold the page's values (item size 1-8)");
        goto done;
    }
    dst = itemsize == 8 ? (uint64_t *)out.buf : PyMem_Malloc((size_t)(n ? n : 1) * 8);
    if (dst == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    rc = p[0] == C_BLOCKS ? blocks(&c, p, page.len, n, dst) : plain(&c, p, page.len, n, dst);
    release(&c);
    if (rc > 0 && itemsize != 8)
        narrow_into(dst, n, itemsize, out.buf);
    if (rc >= 0)
        result = rc > 0 ? Py_NewRef(Py_True) : Py_NewRef(Py_None);
done:
    if (dst != NULL && itemsize != 8)
        PyMem_Free(dst);
    PyBuffer_Release(&out);
    PyBuffer_Release(&page);
    return result;
}

static PyMethodDef methods[] = {
    {"decode", (PyCFunction)(void (*)(void))decode, METH_FASTCALL, decode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastdecode", "Integer column pages decoded in one pass (optional).",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__fastdecode(void)
{
    k_kwnames = Py_BuildValue("(s)", "max_output_size");
    if (k_kwnames == NULL)
        return NULL;
    return PyModule_Create(&module);
}
