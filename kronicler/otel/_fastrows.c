/* The SDK-span conversion's per-span loop in C: optional, ``kronicler.otel.rows`` is the reference.
 *
 * ``spans_to_batch`` spends most of its time in small C-level passes that each touch every span
 * of the batch once (~40 of them: a ``map`` per field, list building, ``zip``, the attribute
 * memo's flat lists). :func:`read_spans` walks the batch once instead and, for each plain SDK
 * span, reads its own fields (``_name``, ``_start_time``, ``_end_time``, ``_status``, ``_kind``,
 * ``_resource``, ``_context``, ``_parent``, ``_attributes``, ``_events``) and writes:
 *
 *   - start, duration, trace id halves, span id, parent span id, status code, kind and the
 *     resource's index into one preallocated uint64 matrix (one row per column);
 *   - the name and, where the span repeats its name's remembered attribute set
 *     (:class:`kronicler.otel.attr_memo.AttributeMemo`'s entry, compared key by key, type by type
 *     and value by value exactly as the memo's first stage does), that set's text;
 *   - the spans left for Python: those with a new attribute set (the memo's second stage), an
 *     ERROR status with a description, or events.
 *
 * Anything it does not know for sure (a name that is not ``str``, a time that is not an ``int``,
 * an unfinished span, an id out of range, an unknown kind or status code, attributes that are
 * not a plain dict, a span of another class) makes it return ``None`` and the caller converts
 * the batch with the pure-Python code, so the rows are those of that code by construction.
 *
 * References: fields are read with ``PyObject_GetAttr`` and released at the end of the span
 * (reading the instance dict instead was tried: making it allocates a dict per span, and the
 * garbage collector's passes it brings cost more than the lookups it saves); only the status's ``status_code`` and ``description`` properties run
 * Python code, once per distinct Status object (the SDK shares one for all unset statuses), and
 * the Status last read is held so that its address cannot be reused while it is remembered.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define N_ROWS 9 /* start, duration, trace_hi, trace_lo, span_id, parent, status, kind, resource */
#define N_KINDS 5
#define N_CODES 3
#define STATUS_ERROR 2
#define PREFETCH 4 /* spans ahead whose object is prefetched */
#define MAX_RESOURCES 64 /* distinct resources searched linearly; more: the Python road */

static PyObject *k_name, *k_start, *k_end, *k_status, *k_kind, *k_resource, *k_context,
    *k_parent, *k_attributes, *k_events, *k_dict, *k_dq, *k_status_code, *k_description;

#if defined(__SIZEOF_INT128__) && PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000
#define DIGITS 1 /* the int's layout is known: its digits are read directly */
/* A non-negative int of at most 128 bits from its digits (``_PyLong_AsByteArray``, which
 * ``PyLong_AsUnsignedLongLong`` also uses, costs ~600 instructions). 0 when negative. */
static int
digits_u128(PyObject *v, unsigned __int128 *out)
{
#if PY_VERSION_HEX >= 0x030C0000
    uintptr_t tag = ((PyLongObject *)v)->long_value.lv_tag;
    if ((tag & 3) == 2)
        return 0;
    Py_ssize_t ndigits = (Py_ssize_t)(tag >> 3);
    const digit *d = ((PyLongObject *)v)->long_value.ob_digit;
#else
    Py_ssize_t ndigits = Py_SIZE(v);
    if (ndigits < 0)
        return 0;
    const digit *d = ((PyLongObject *)v)->ob_digit;
#endif
    unsigned __int128 x = 0;
    for (Py_ssize_t k = ndigits - 1; k >= 0; k--)
        x = (x << PyLong_SHIFT) | d[k];
    *out = x;
    return 1;
}
#endif

/* 1: converted into ``*out``; 0: not a value this loop handles (bail); -1: error set. */
static int
read_u64(PyObject *v, uint64_t *out)
{
    if (!PyLong_CheckExact(v))
        return 0;
#ifdef DIGITS
    unsigned __int128 x;
    if (_PyLong_NumBits(v) > 64 || !digits_u128(v, &x))
        return 0;
    *out = (uint64_t)x;
    return 1;
#else
    unsigned long long x = PyLong_AsUnsignedLongLong(v);
    if (x == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();
        return 0;
    }
    *out = (uint64_t)x;
    return 1;
#endif
}

static int
read_i64(PyObject *v, int64_t *out)
{
    if (!PyLong_CheckExact(v))
        return 0;
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (overflow)
        return 0;
    *out = (int64_t)x;
    return 1;
}

/* A 128-bit trace id as two halves; 0 for a negative or wider int. */
static int
read_u128(PyObject *v, uint64_t *hi, uint64_t *lo)
{
    if (!PyLong_CheckExact(v))
        return 0;
#ifdef DIGITS
    unsigned __int128 x;
    if (_PyLong_NumBits(v) > 128 || !digits_u128(v, &x))
        return 0;
    *hi = (uint64_t)(x >> 64);
    *lo = (uint64_t)x;
    return 1;
#else
    int overflow = 0;
    long long small = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (small == -1 && PyErr_Occurred())
        return -1;
    if (!overflow) {
        if (small < 0)
            return 0;
        *hi = 0;
        *lo = (uint64_t)small;
        return 1;
    }
    if (overflow < 0 || _PyLong_NumBits(v) > 128)
        return 0;
    unsigned char buf[16];
#if PY_VERSION_HEX >= 0x030D0000
    if (PyLong_AsNativeBytes(v, buf, 16,
                             Py_ASNATIVEBYTES_LITTLE_ENDIAN | Py_ASNATIVEBYTES_UNSIGNED_BUFFER) < 0)
        return -1;
#else
    if (_PyLong_AsByteArray((PyLongObject *)v, buf, 16, 1, 0) < 0)
        return -1;
#endif
    uint64_t l = 0, h = 0;
    for (int b = 7; b >= 0; b--) {
        l = (l << 8) | buf[b];
        h = (h << 8) | buf[b + 8];
    }
    *hi = h;
    *lo = l;
    return 1;
#endif
}

/* (trace_hi, trace_lo, span_id) of a SpanContext (a tuple by its declared type); None: zeros. */
static int
read_context(PyObject *ctx, uint64_t *hi, uint64_t *lo, uint64_t *span_id, int want_trace)
{
    if (ctx == Py_None) {
        *hi = *lo = *span_id = 0;
        return 1;
    }
    if (!PyTuple_Check(ctx) || PyTuple_GET_SIZE(ctx) < 2)
        return 0;
    if (want_trace) {
        int r = read_u128(PyTuple_GET_ITEM(ctx, 0), hi, lo);
        if (r <= 0)
            return r;
    }
    return read_u64(PyTuple_GET_ITEM(ctx, 1), span_id);
}

static int
str_equal(PyObject *a, PyObject *b)
{
    if (a == b)
        return 1;
    if (!PyUnicode_CheckExact(a) || !PyUnicode_CheckExact(b))
        return 0;
    if (PyUnicode_GET_LENGTH(a) != PyUnicode_GET_LENGTH(b))
        return 0;
    return PyUnicode_Compare(a, b) == 0;
}

/* Whether ``attrs`` repeats the memo entry (size, keys, values, types, text): the memo's first
 * stage for one set. Entries hold only values that are flat, non-zero floats or tuples of str
 * (``attr_memo._rememberable``), so equal types plus ``==`` prove the texts equal. 1 / 0 / -1. */
static int
repeats(PyObject *attrs, PyObject *entry)
{
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 5)
        return 0;
    PyObject *keys = PyTuple_GET_ITEM(entry, 1), *values = PyTuple_GET_ITEM(entry, 2),
             *types = PyTuple_GET_ITEM(entry, 3);
    Py_ssize_t size = PyDict_GET_SIZE(attrs);
    if (!PyTuple_CheckExact(keys) || !PyTuple_CheckExact(values) || !PyTuple_CheckExact(types) ||
        PyTuple_GET_SIZE(keys) != size || PyTuple_GET_SIZE(values) != size ||
        PyTuple_GET_SIZE(types) != size)
        return 0;
    Py_ssize_t pos = 0, j = 0;
    PyObject *k, *v;
    while (PyDict_Next(attrs, &pos, &k, &v)) {
        PyObject *was = PyTuple_GET_ITEM(values, j);
        PyTypeObject *t = Py_TYPE(v);
        if ((PyObject *)t != PyTuple_GET_ITEM(types, j) || !str_equal(k, PyTuple_GET_ITEM(keys, j)))
            return 0;
        j++;
        if (v == was)
            continue;
        if (Py_TYPE(was) != t)
            return 0;
        if (t == &PyUnicode_Type) {
            if (!str_equal(v, was))
                return 0;
        }
        else if (t == &PyFloat_Type) {
            if (PyFloat_AS_DOUBLE(v) != PyFloat_AS_DOUBLE(was))
                return 0;
        }
        else if (t == &PyLong_Type || t == &PyBytes_Type) {
            int eq = PyObject_RichCompareBool(v, was, Py_EQ);
            if (eq <= 0)
                return eq;
        }
        else if (t == &PyTuple_Type) {
            Py_ssize_t m = PyTuple_GET_SIZE(v);
            if (PyTuple_GET_SIZE(was) != m)
                return 0;
            for (Py_ssize_t e = 0; e < m; e++) {
                PyObject *x = PyTuple_GET_ITEM(v, e), *y = PyTuple_GET_ITEM(was, e);
                if (!PyUnicode_CheckExact(x) || !PyUnicode_CheckExact(y) || !str_equal(x, y))
                    return 0;
            }
        }
        else {
            return 0; /* bool and None are singletons: not identical means different */
        }
    }
    return j == size;
}

/* The plain dict of a span's attributes: a dict, or a BoundedAttributes' ``_dict``. New ref;
 * NULL without an error set: not one this loop handles. */
static PyObject *
plain_attributes(PyObject *attrs)
{
    if (PyDict_CheckExact(attrs)) {
        Py_INCREF(attrs);
        return attrs;
    }
    PyObject *inner = PyObject_GetAttr(attrs, k_dict);
    if (inner == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError))
            PyErr_Clear();
        return NULL;
    }
    if (!PyDict_CheckExact(inner))
        Py_CLEAR(inner);
    return inner;
}

/* Number of events (a tuple, a list, or a BoundedList's ``_dq``); -1 with an error set, -2:
 * not one this loop handles. */
static Py_ssize_t
event_count(PyObject *events)
{
    if (events == Py_None)
        return 0;
    if (PyTuple_CheckExact(events) || PyList_CheckExact(events))
        return Py_SIZE(events);
    PyObject *dq = PyObject_GetAttr(events, k_dq);
    if (dq == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
        return -2;
    }
    Py_ssize_t n = PyObject_Length(dq);
    Py_DECREF(dq);
    return n;
}

static Py_ssize_t
member_index(PyObject *v, PyObject *members)
{
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(members); i++)
        if (PyTuple_GET_ITEM(members, i) == v)
            return i;
    return -1;
}

enum { F_NAME, F_START, F_END, F_STATUS, F_KIND, F_RESOURCE, F_CONTEXT, F_PARENT, F_ATTRS,
       F_EVENTS, N_FIELDS };

static PyObject *
read_spans(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *spans_in, *cls, *entries, *kinds, *codes, *out_obj;
    if (!PyArg_ParseTuple(args, "OOO!O!O!O:read_spans", &spans_in, &cls, &PyDict_Type, &entries,
                          &PyTuple_Type, &kinds, &PyTuple_Type, &codes, &out_obj))
        return NULL;
    if (PyTuple_GET_SIZE(kinds) != N_KINDS || PyTuple_GET_SIZE(codes) != N_CODES) {
        PyErr_SetString(PyExc_ValueError, "kinds and codes must list 5 and 3 members");
        return NULL;
    }
    PyObject *spans = PySequence_Fast(spans_in, "spans must be a sequence");
    if (spans == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(spans);
    Py_buffer buf;
    if (PyObject_GetBuffer(out_obj, &buf, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        Py_DECREF(spans);
        return NULL;
    }
    PyObject *result = NULL, *names = NULL, *texts = NULL, *stale = NULL, *resources = NULL,
             *described = NULL, *evented = NULL, *last_status = NULL;
    PyObject *field[N_FIELDS] = {NULL};
    PyObject *attrs = NULL;
    if ((size_t)buf.len != (size_t)n * N_ROWS * sizeof(uint64_t)) {
        PyErr_Format(PyExc_ValueError, "out must hold %d x %zd uint64s", N_ROWS, n);
        goto done;
    }
    uint64_t *m = (uint64_t *)buf.buf;
    uint64_t *c_start = m, *c_dur = m + n, *c_hi = m + 2 * n, *c_lo = m + 3 * n,
             *c_span = m + 4 * n, *c_parent = m + 5 * n, *c_status = m + 6 * n,
             *c_kind = m + 7 * n, *c_res = m + 8 * n;
    names = PyList_New(n);
    texts = PyList_New(n);
    stale = PyList_New(0);
    resources = PyList_New(0);
    described = PyList_New(0);
    evented = PyList_New(0);
    if (!names || !texts || !stale || !resources || !described || !evented)
        goto done;
    static PyObject **const keys[N_FIELDS] = {&k_name, &k_start, &k_end, &k_status,
                                              &k_kind, &k_resource, &k_context, &k_parent,
                                              &k_attributes, &k_events};
    uint64_t last_code = 0;
    PyObject *last_description = NULL; /* borrowed from last_status's reading; in `described` */
    int bail = 0;
    for (Py_ssize_t i = 0; i < n && !bail; i++) {
        PyObject *span = PySequence_Fast_GET_ITEM(spans, i);
#if defined(__GNUC__)
        if (i + PREFETCH < n) { /* spans just made are scattered: start their loads early */
            PyObject *ahead = PySequence_Fast_GET_ITEM(spans, i + PREFETCH);
            __builtin_prefetch(ahead);
            __builtin_prefetch((char *)ahead - 4 * sizeof(void *)); /* a managed dict's slots */
        }
#endif
        if ((PyObject *)Py_TYPE(span) != cls) {
            bail = 1;
            break;
        }
        for (int f = 0; f < N_FIELDS; f++) {
            field[f] = PyObject_GetAttr(span, *keys[f]);
            if (field[f] == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                    goto done;
                PyErr_Clear();
                bail = 1;
                goto next;
            }
        }
        PyObject *name = field[F_NAME];
        if (!PyUnicode_CheckExact(name)) {
            bail = 1;
            goto next;
        }
        int64_t start, end;
        int r = read_i64(field[F_START], &start);
        if (r > 0)
            r = read_i64(field[F_END], &end);
        if (r > 0)
            r = read_context(field[F_CONTEXT], &c_hi[i], &c_lo[i], &c_span[i], 1);
        uint64_t unused_hi, unused_lo;
        if (r > 0)
            r = read_context(field[F_PARENT], &unused_hi, &unused_lo, &c_parent[i], 0);
        if (r < 0)
            goto done;
        if (r == 0) {
            bail = 1;
            goto next;
        }
        c_start[i] = (uint64_t)start;
        /* numpy's int64 subtraction wraps; so does this one, then negative lasts 0 */
        int64_t dur = (int64_t)((uint64_t)end - (uint64_t)start);
        c_dur[i] = (uint64_t)(dur > 0 ? dur : 0);
        Py_ssize_t kind = member_index(field[F_KIND], kinds);
        if (kind < 0) {
            bail = 1;
            goto next;
        }
        c_kind[i] = (uint64_t)kind;

        PyObject *status = field[F_STATUS];
        if (status != last_status) {
            PyObject *code_obj = PyObject_GetAttr(status, k_status_code);
            if (code_obj == NULL)
                goto done;
            Py_ssize_t code = member_index(code_obj, codes);
            Py_DECREF(code_obj);
            if (code < 0) {
                bail = 1;
                goto next;
            }
            last_description = NULL;
            if (code == STATUS_ERROR) {
                PyObject *d = PyObject_GetAttr(status, k_description);
                if (d == NULL)
                    goto done;
                int truthy = PyObject_IsTrue(d);
                if (truthy < 0) {
                    Py_DECREF(d);
                    goto done;
                }
                if (truthy) {
                    /* kept alive by `described` below (appended for this span) */
                    last_description = d;
                }
                else {
                    Py_DECREF(d);
                }
            }
            Py_INCREF(status);
            Py_XSETREF(last_status, status);
            last_code = (uint64_t)code;
            if (last_description != NULL) {
                PyObject *item = Py_BuildValue("(nO)", i, last_description);
                Py_DECREF(last_description); /* `item` holds it now; later spans reuse it */
                if (item == NULL || PyList_Append(described, item) < 0) {
                    Py_XDECREF(item);
                    goto done;
                }
                Py_DECREF(item);
            }
        }
        else if (last_description != NULL) {
            PyObject *item = Py_BuildValue("(nO)", i, last_description);
            if (item == NULL || PyList_Append(described, item) < 0) {
                Py_XDECREF(item);
                goto done;
            }
            Py_DECREF(item);
        }
        c_status[i] = last_code;

        PyObject *res = field[F_RESOURCE];
        Py_ssize_t n_res = PyList_GET_SIZE(resources), at = -1;
        if (n_res && PyList_GET_ITEM(resources, n_res - 1) == res)
            at = n_res - 1;
        for (Py_ssize_t k = 0; at < 0 && k < n_res; k++)
            if (PyList_GET_ITEM(resources, k) == res)
                at = k;
        if (at < 0) {
            if (n_res >= MAX_RESOURCES) {
                bail = 1;
                goto next;
            }
            if (PyList_Append(resources, res) < 0)
                goto done;
            at = n_res;
        }
        c_res[i] = (uint64_t)at;

        Py_ssize_t n_events = event_count(field[F_EVENTS]);
        if (n_events == -1)
            goto done;
        if (n_events == -2) {
            bail = 1;
            goto next;
        }
        if (n_events > 0) {
            PyObject *idx = PyLong_FromSsize_t(i);
            if (idx == NULL || PyList_Append(evented, idx) < 0) {
                Py_XDECREF(idx);
                goto done;
            }
            Py_DECREF(idx);
        }

        attrs = plain_attributes(field[F_ATTRS]);
        if (attrs == NULL) {
            if (PyErr_Occurred())
                goto done;
            bail = 1;
            goto next;
        }
        PyObject *entry = PyDict_GetItemWithError(entries, name); /* borrowed */
        int same = 0;
        if (entry != NULL) {
            same = repeats(attrs, entry);
            if (same < 0)
                goto done;
        }
        else if (PyErr_Occurred()) {
            goto done;
        }
        PyObject *text = Py_None;
        if (same) {
            text = PyTuple_GET_ITEM(entry, 4);
        }
        else {
            PyObject *item = Py_BuildValue("(nO)", i, attrs);
            if (item == NULL || PyList_Append(stale, item) < 0) {
                Py_XDECREF(item);
                goto done;
            }
            Py_DECREF(item);
        }
        Py_INCREF(text);
        PyList_SET_ITEM(texts, i, text);
        Py_INCREF(name);
        PyList_SET_ITEM(names, i, name);
        Py_CLEAR(attrs);
    next:
        for (int f = 0; f < N_FIELDS; f++)
            Py_CLEAR(field[f]);
    }
    if (bail) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = PyTuple_Pack(6, names, texts, stale, resources, described, evented);
done:
    for (int f = 0; f < N_FIELDS; f++)
        Py_XDECREF(field[f]);
    Py_XDECREF(attrs);
    Py_XDECREF(last_status);
    Py_XDECREF(names);
    Py_XDECREF(texts);
    Py_XDECREF(stale);
    Py_XDECREF(resources);
    Py_XDECREF(described);
    Py_XDECREF(evented);
    PyBuffer_Release(&buf);
    Py_DECREF(spans);
    return result;
}

/* ---- OTLP: where each field of many serialized ``Span`` messages lies ---------------------
 *
 * :func:`scan_spans` is :func:`kronicler.otel.otlp_wire.scan_spans` (the reference, numpy) span
 * by span: it walks each span's fields once instead of in numpy rounds over all spans (~0.4 ms a
 * request of 1,000 spans there, ~15 us here). Same tables, same rules for what is sent to the
 * per-span parser (``slow``), except that no span is slow for its tag being rare in a round (the
 * numpy scan's bound on its cost; here the cost is linear anyway). Unlike the reference it does
 * not trust the structure: a varint, length or field running past its span makes the span slow
 * (upb, which parsed the request first, has the last word). */

#define SPAN_ROWS 18 /* field numbers 0..16 and one row for the others */
#define ROW_KIND 6
#define ROW_ATTRIBUTES 9
#define ROW_EVENTS 11
#define ROW_STATUS 15
static const int span_wire[SPAN_ROWS] = {-1, 2, 2, 2, 2, 2, 0, 1, 1, 2, 0, 2, 0, 2, 0, 2, 5, -1};

/* The varint at p (before limit): its value and length; 0 length when it does not end there. */
static Py_ssize_t
varint(const unsigned char *p, const unsigned char *limit, uint64_t *value)
{
    uint64_t v = 0;
    for (Py_ssize_t k = 0; k < 10 && p + k < limit; k++) {
        v |= (uint64_t)(p[k] & 0x7F) << (7 * k);
        if (p[k] < 0x80) {
            *value = v;
            return k + 1;
        }
    }
    return 0;
}

typedef struct {
    Py_buffer view;
    int held;
} held_buffer;

static void
release(held_buffer *b, int count)
{
    for (int j = 0; j < count; j++)
        if (b[j].held)
            PyBuffer_Release(&b[j].view);
}

static int
take(PyObject *obj, held_buffer *b, Py_ssize_t itemsize, Py_ssize_t count, int writable)
{
    if (PyObject_GetBuffer(obj, &b->view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    b->held = 1;
    if (count >= 0 && b->view.len != itemsize * count) {
        PyErr_SetString(PyExc_ValueError, "scan_spans: an array of the wrong size");
        return -1;
    }
    return 0;
}

static PyObject *
scan_spans(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *o_data, *o_start, *o_end, *o_offset, *o_size, *o_kind, *o_events, *o_astart,
        *o_aend, *o_slow;
    Py_ssize_t n, max_fields;
    if (!PyArg_ParseTuple(args, "OOOnnOOOOOOO", &o_data, &o_start, &o_end, &n, &max_fields,
                          &o_offset, &o_size, &o_kind, &o_events, &o_astart, &o_aend, &o_slow))
        return NULL;
    held_buffer b[10] = {{{0}}};
    PyObject *result = NULL;
    if (n < 0 || take(o_data, &b[0], 1, -1, 0) < 0 || take(o_start, &b[1], 8, n, 0) < 0 ||
        take(o_end, &b[2], 8, n, 0) < 0 || take(o_offset, &b[3], 8, SPAN_ROWS * n, 1) < 0 ||
        take(o_size, &b[4], 8, SPAN_ROWS * n, 1) < 0 || take(o_kind, &b[5], 8, n, 1) < 0 ||
        take(o_events, &b[6], 1, n, 1) < 0 || take(o_astart, &b[7], 8, n, 1) < 0 ||
        take(o_aend, &b[8], 8, n, 1) < 0 || take(o_slow, &b[9], 1, n, 1) < 0)
        goto done;
    const unsigned char *data = b[0].view.buf;
    const Py_ssize_t data_len = b[0].view.len;
    const int64_t *start = b[1].view.buf, *end = b[2].view.buf;
    int64_t *offset = b[3].view.buf, *size = b[4].view.buf;
    uint64_t *kind = b[5].view.buf;
    unsigned char *events = b[6].view.buf, *slow = b[9].view.buf;
    int64_t *astart = b[7].view.buf, *aend = b[8].view.buf;
    memset(offset, 0, (size_t)(SPAN_ROWS * n) * 8);
    memset(size, 0, (size_t)(SPAN_ROWS * n) * 8);
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t pos = start[i], stop = end[i], a_start = -1, a_end = 0;
        uint64_t k = 0;
        int bad = pos < 0 || stop < pos || stop > data_len, evented = 0;
        const unsigned char *limit = data + (bad ? 0 : stop);
        for (Py_ssize_t fields = 0; !bad && pos < stop; fields++) {
            if (fields == max_fields) { /* more fields than the reference reads */
                bad = 1;
                break;
            }
            uint64_t tag, value;
            Py_ssize_t w = varint(data + pos, limit, &tag);
            if (w == 0 || w > 2) { /* a field number past 2047 (or no tag) */
                bad = 1;
                break;
            }
            uint64_t field = tag >> 3;
            int wire = (int)(tag & 7);
            int row = field < SPAN_ROWS - 1 ? (int)field : SPAN_ROWS - 1;
            if ((wire != 0 && wire != 1 && wire != 2 && wire != 5) ||
                (span_wire[row] != -1 && span_wire[row] != wire) ||
                (row == ROW_STATUS && size[row * n + i] > 0)) { /* a second status: upb merges */
                bad = 1;
                break;
            }
            int64_t at = pos + w, next;
            if (wire == 0) {
                Py_ssize_t vw = varint(data + at, limit, &value);
                if (vw == 0) {
                    bad = 1;
                    break;
                }
                if (row == ROW_KIND)
                    k = value;
                next = at + vw;
            }
            else if (wire == 2) {
                Py_ssize_t vw = varint(data + at, limit, &value);
                if (vw == 0 || value > (uint64_t)(stop - at - vw)) {
                    bad = 1;
                    break;
                }
                at += vw;
                next = at + (int64_t)value;
            }
            else
                next = at + (wire == 1 ? 8 : 4);
            if (next > stop) {
                bad = 1;
                break;
            }
            if (row == ROW_ATTRIBUTES) {
                if (a_start < 0)
                    a_start = pos;
                a_end = next;
            }
            else if (row == ROW_EVENTS)
                evented = 1;
            offset[row * n + i] = at;
            size[row * n + i] = next - at;
            pos = next;
        }
        slow[i] = (unsigned char)bad;
        if (bad) { /* the per-span parser fills these in */
            for (int r = 0; r < SPAN_ROWS; r++)
                offset[r * n + i] = size[r * n + i] = 0;
            k = 0;
            evented = 0;
        }
        kind[i] = k;
        events[i] = (unsigned char)evented;
        astart[i] = (a_start >= 0 && !bad) ? a_start : 0;
        aend[i] = (a_start >= 0 && !bad) ? a_end : 0;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    release(b, 10);
    return result;
}

/* ``[data[a:b] for a, b in zip(start, end)]`` as bytes objects, without a Python loop. */
static PyObject *
slices(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *o_data, *o_start, *o_end;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "OOOn", &o_data, &o_start, &o_end, &n))
        return NULL;
    held_buffer b[3] = {{{0}}};
    PyObject *out = NULL;
    if (n < 0 || take(o_data, &b[0], 1, -1, 0) < 0 || take(o_start, &b[1], 8, n, 0) < 0 ||
        take(o_end, &b[2], 8, n, 0) < 0)
        goto done;
    const char *data = b[0].view.buf;
    const int64_t *start = b[1].view.buf, *end = b[2].view.buf;
    out = PyList_New(n);
    if (out == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (start[i] < 0 || end[i] < start[i] || end[i] > b[0].view.len) {
            PyErr_SetString(PyExc_ValueError, "slices: a slice out of the buffer");
            Py_CLEAR(out);
            goto done;
        }
        PyObject *piece = PyBytes_FromStringAndSize(data + start[i], end[i] - start[i]);
        if (piece == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, piece);
    }
done:
    release(b, 3);
    return out;
}

/* ``width`` bytes at each of ``n`` places of ``data`` into ``out`` (n x width, C order): numpy's
 * ``data[at[:, None] + arange(width)]`` without its index matrix (~20 times faster). */
static PyObject *
gather(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *o_data, *o_at, *o_out;
    Py_ssize_t n, width;
    if (!PyArg_ParseTuple(args, "OOnnO", &o_data, &o_at, &n, &width, &o_out))
        return NULL;
    held_buffer b[3] = {{{0}}};
    PyObject *result = NULL;
    if (n < 0 || width < 0 || take(o_data, &b[0], 1, -1, 0) < 0 ||
        take(o_at, &b[1], 8, n, 0) < 0 || take(o_out, &b[2], width, n, 1) < 0)
        goto done;
    const char *data = b[0].view.buf;
    const int64_t *at = b[1].view.buf;
    char *out = b[2].view.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (at[i] < 0 || at[i] > b[0].view.len - width) {
            PyErr_SetString(PyExc_ValueError, "gather: a place out of the buffer");
            goto done;
        }
        memcpy(out + i * width, data + at[i], (size_t)width);
    }
    result = Py_None;
    Py_INCREF(result);
done:
    release(b, 3);
    return result;
}

static PyMethodDef module_methods[] = {
    {"read_spans", read_spans, METH_VARARGS,
     "read_spans(spans, cls, entries, kinds, codes, out) -> (names, texts, stale, resources, "
     "described, evented) | None: see the source's opening comment."},
    {"scan_spans", scan_spans, METH_VARARGS,
     "scan_spans(data, start, end, n, max_fields, offset, size, kind, events, attrs_start, "
     "attrs_end, slow) -> None: kronicler.otel.otlp_wire.scan_spans's tables, span by span."},
    {"gather", gather, METH_VARARGS,
     "gather(data, at, n, width, out) -> None: out[i] = data[at[i]:at[i] + width]."},
    {"slices", slices, METH_VARARGS,
     "slices(data, start, end, n) -> list of bytes data[start[i]:end[i]]."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_fastrows",
    "The SDK-span conversion loop in C (optional; see the source's opening comment).", -1,
    module_methods,
};

PyMODINIT_FUNC
PyInit__fastrows(void)
{
#ifdef Py_GIL_DISABLED
    PyErr_SetString(PyExc_ImportError, "the C conversion loop relies on the GIL");
    return NULL;
#endif
    struct {
        PyObject **slot;
        const char *text;
    } names[] = {
        {&k_name, "_name"},         {&k_start, "_start_time"},  {&k_end, "_end_time"},
        {&k_status, "_status"},     {&k_kind, "_kind"},         {&k_resource, "_resource"},
        {&k_context, "_context"},   {&k_parent, "_parent"},     {&k_attributes, "_attributes"},
        {&k_events, "_events"},     {&k_dict, "_dict"},         {&k_dq, "_dq"},
        {&k_status_code, "status_code"}, {&k_description, "description"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        *names[i].slot = PyUnicode_InternFromString(names[i].text);
        if (*names[i].slot == NULL)
            return NULL;
    }
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "ROWS", N_ROWS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
