/* The capture decorator's fast path in C: optional, the pure-Python wrapper is the reference.
 *
 * ``kronicler.otel.tracer.wrap_function`` spends most of a captured call's cost in interpreter
 * overhead: a Python frame for the wrapper, star-args and keyword-dict packing, two dozen bytecodes, and a
 * flat list of Python ints that the writer later converts one by one (``np.fromiter``, ~230
 * instructions an int). This module does the same steps as that wrapper's common path in C:
 *
 *   1. the ``_TRACER_PROVIDER is _expected`` check (two dict reads; else the Python route);
 *   2. read OTel's context variable, take the next ``seq``, build the five-item frame, set it;
 *   3. read the clock (the clock of ``time.perf_counter_ns``), call through vectorcall, read it
 *      again, reset the variable;
 *   4. on the common end (nobody asked for the span: ``frame[3] is None``) append six int64s
 *      to a C buffer (:class:`Records`) that the writer takes as ``bytes`` and reads with
 *      ``np.frombuffer``: no Python int per record at all.
 *
 * Anything unusual (an exception, a span somebody asked for, a foreign parent, a route other
 * than the fast pipeline, an internal error) calls the same Python functions the pure wrapper
 * calls (``_resolve``, ``_sdk_call``, ``current.start``, ``finish``, ``internal_error``), so
 * semantics are those of the Python code by construction.
 *
 * Concurrency: every operation on a Records buffer or the Counter runs with the GIL held and
 * without calling back into Python in the middle, so appends, takes and drops are atomic with
 * respect to each other. Free-threaded builds are refused at import (the pure path runs).
 * The module keeps its state in C globals set once by ``install``: one interpreter per process.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define WIDTH 6 /* int64s per compact record: site, t0, t1, seq, root, parent_seq */
#define SHRINK_FLOOR 8192 /* records of capacity kept however empty the buffer gets */

/* -- the clock: the one behind time.perf_counter_ns ----------------------------------------- */
#if PY_VERSION_HEX >= 0x030D0000
#define CLOCK_NAME "PyTime_PerfCounterRaw"
static inline int64_t
now_ns(void)
{
    PyTime_t t;
    (void)PyTime_PerfCounterRaw(&t);
    return (int64_t)t;
}
#elif defined(__linux__)
/* CPython < 3.13 on Linux implements perf_counter with clock_gettime(CLOCK_MONOTONIC); the
 * loader compares CLOCK_NAME with time.get_clock_info("perf_counter") before using us. */
#define CLOCK_NAME "clock_gettime(CLOCK_MONOTONIC)"
static inline int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
#else
#define CLOCK_NAME "" /* no known match: the loader keeps the pure path */
static inline int64_t
now_ns(void)
{
    return 0;
}
#endif

/* -- Counter: the process's one seq source, shared with the Python paths (next(counter)) ---- */
typedef struct {
    PyObject_HEAD
    long long next;
} CounterObject;

static PyObject *
counter_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    long long start = 1;
    static char *kwlist[] = {"start", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|L:Counter", kwlist, &start))
        return NULL;
    CounterObject *self = (CounterObject *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->next = start;
    return (PyObject *)self;
}

static PyObject *
counter_iternext(CounterObject *self)
{
    return PyLong_FromLongLong(self->next++);
}

static PyObject *
counter_restart(CounterObject *self, PyObject *arg)
{
    long long start = PyLong_AsLongLong(arg);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    self->next = start;
    Py_RETURN_NONE;
}

static PyMethodDef counter_methods[] = {
    {"restart", (PyCFunction)counter_restart, METH_O, "Continue from the given seq."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CounterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kronicler.otel._fastcall.Counter",
    .tp_basicsize = sizeof(CounterObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An int64 seq counter: next() gives the next seq; restart(n) moves it.",
    .tp_new = counter_new,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)counter_iternext,
    .tp_methods = counter_methods,
};

/* -- Records: the capture path's one bounded-by-the-pipeline buffer of compact records ------ */
typedef struct {
    PyObject_HEAD
    int64_t *data;
    Py_ssize_t len; /* records */
    Py_ssize_t cap; /* records */
    long long lost; /* records that could not be kept (no memory) */
} RecordsObject;

static int
records_reserve(RecordsObject *self, Py_ssize_t more)
{
    if (self->len + more <= self->cap)
        return 0;
    Py_ssize_t cap = self->cap ? self->cap : SHRINK_FLOOR;
    while (cap < self->len + more) {
        if (cap > PY_SSIZE_T_MAX / 2 / (Py_ssize_t)(WIDTH * sizeof(int64_t)))
            return -1;
        cap *= 2;
    }
    int64_t *data = PyMem_RawRealloc(self->data, (size_t)cap * WIDTH * sizeof(int64_t));
    if (data == NULL)
        return -1;
    self->data = data;
    self->cap = cap;
    return 0;
}

/* Appends one record; never fails towards the caller: a record without memory is counted. */
static inline void
records_push(RecordsObject *self, int64_t site, int64_t t0, int64_t t1, int64_t seq,
             int64_t root, int64_t pseq)
{
    if (self->len >= self->cap && records_reserve(self, 1) < 0) {
        self->lost++;
        return;
    }
    int64_t *p = self->data + self->len * WIDTH;
    p[0] = site;
    p[1] = t0;
    p[2] = t1;
    p[3] = seq;
    p[4] = root;
    p[5] = pseq;
    self->len++;
}

/* Removes the first n records (n <= len), giving memory back when most of it is idle. */
static void
records_remove(RecordsObject *self, Py_ssize_t n)
{
    Py_ssize_t rest = self->len - n;
    if (rest > 0 && n > 0)
        memmove(self->data, self->data + n * WIDTH, (size_t)rest * WIDTH * sizeof(int64_t));
    self->len = rest;
    if (self->cap > SHRINK_FLOOR && self->cap > 4 * rest) {
        Py_ssize_t cap = rest * 2 > SHRINK_FLOOR ? rest * 2 : SHRINK_FLOOR;
        int64_t *data = PyMem_RawRealloc(self->data, (size_t)cap * WIDTH * sizeof(int64_t));
        if (data != NULL) {
            self->data = data;
            self->cap = cap;
        }
    }
}

static Py_ssize_t
clamp_count(RecordsObject *self, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return -1;
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "a count of records must be >= 0, got %zd", n);
        return -1;
    }
    return n < self->len ? n : self->len;
}

static PyObject *
records_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) || (kwds != NULL && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "Records() takes no arguments");
        return NULL;
    }
    return type->tp_alloc(type, 0);
}

static void
records_dealloc(RecordsObject *self)
{
    PyMem_RawFree(self->data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
records_extend(RecordsObject *self, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "extend needs a sequence of ints");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n % WIDTH) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "compact records hold 6 ints each, got %zd ints", n);
        return NULL;
    }
    int64_t values[WIDTH];
    PyObject **items = PySequence_Fast_ITEMS(seq);
    /* Convert everything first: a bad value leaves the buffer unchanged. */
    int64_t *tmp = n > WIDTH ? PyMem_Malloc((size_t)n * sizeof(int64_t)) : values;
    if (tmp == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long long v = PyLong_AsLongLong(items[i]);
        if (v == -1 && PyErr_Occurred()) {
            if (tmp != values)
                PyMem_Free(tmp);
            Py_DECREF(seq);
            return NULL;
        }
        tmp[i] = v;
    }
    Py_DECREF(seq);
    if (records_reserve(self, n / WIDTH) < 0) {
        self->lost += n / WIDTH;
    }
    else {
        memcpy(self->data + self->len * WIDTH, tmp, (size_t)n * sizeof(int64_t));
        self->len += n / WIDTH;
    }
    if (tmp != values)
        PyMem_Free(tmp);
    Py_RETURN_NONE;
}

static PyObject *
records_take(RecordsObject *self, PyObject *arg)
{
    Py_ssize_t n = clamp_count(self, arg);
    if (n < 0)
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize((const char *)self->data,
                                              n * WIDTH * (Py_ssize_t)sizeof(int64_t));
    if (out != NULL)
        records_remove(self, n);
    return out;
}

static PyObject *
records_drop(RecordsObject *self, PyObject *arg)
{
    Py_ssize_t n = clamp_count(self, arg);
    if (n < 0)
        return NULL;
    records_remove(self, n);
    return PyLong_FromSsize_t(n);
}

static PyObject *
records_clear(RecordsObject *self, PyObject *Py_UNUSED(ignored))
{
    records_remove(self, self->len);
    self->lost = 0;
    Py_RETURN_NONE;
}

static PyObject *
records_pending(RecordsObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t(self->len);
}

static PyObject *
records_get_lost(RecordsObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(self->lost);
}

static PyMethodDef records_methods[] = {
    {"extend", (PyCFunction)records_extend, METH_O,
     "Append records given as a flat sequence of ints, 6 a record."},
    {"take", (PyCFunction)records_take, METH_O,
     "Remove the oldest n records and return them as native int64 bytes, 6 a record."},
    {"drop", (PyCFunction)records_drop, METH_O,
     "Remove the oldest n records; returns how many were removed."},
    {"clear", (PyCFunction)records_clear, METH_NOARGS, "Remove every record; lost goes to 0."},
    {"pending", (PyCFunction)records_pending, METH_NOARGS, "Records held now."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef records_getset[] = {
    {"lost", (getter)records_get_lost, NULL, "Records that could not be kept (no memory).",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RecordsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kronicler.otel._fastcall.Records",
    .tp_basicsize = sizeof(RecordsObject),
    .tp_dealloc = (destructor)records_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Compact call records as int64s in C memory; the writer takes them as bytes.",
    .tp_new = records_new,
    .tp_methods = records_methods,
    .tp_getset = records_getset,
};

/* -- the installed state (set once by install()) ------------------------------------------- */
static PyObject *g_var;            /* OTel's context variable (a ContextVar) */
static PyObject *g_trace_dict;     /* opentelemetry.trace.__dict__ (_TRACER_PROVIDER) */
static PyObject *g_tracer_dict;    /* kronicler.otel.tracer.__dict__ (_expected) */
static PyObject *g_resolve;        /* tracer._resolve() */
static PyObject *g_plain;          /* tracer._PLAIN */
static PyObject *g_sdk_call;       /* tracer._sdk_call(route, site, fn, args, kwargs) */
static PyObject *g_start;          /* current.start(value, seq) -> (frame, pseq) */
static PyObject *g_finish;         /* tracer.finish(frame, index, site, t0, t1, pseq, exc) */
static PyObject *g_internal_error; /* tracer.internal_error(where, exc) */
static PyObject *g_done;           /* current.DONE */
static RecordsObject *g_records;
static CounterObject *g_counter;
static PyObject *g_key_provider, *g_key_expected, *g_where_start, *g_where_end;

/* -- Wrapper: the decorated function --------------------------------------------------------- */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *fn;
    PyObject *site;
    PyObject *index_obj;
    int64_t index;
    PyObject *dict;
    PyObject *weakrefs;
} WrapperObject;

/* The raised exception, normalised, with its traceback attached; the error indicator cleared. */
static PyObject *
fetch_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

static void
restore_exception(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyObject *type = (PyObject *)Py_TYPE(exc);
    PyObject *tb = PyException_GetTraceback(exc);
    Py_INCREF(type);
    PyErr_Restore(type, exc, tb);
#endif
}

/* As the Python wrapper's ``except Exception: internal_error(where, exc)``: an Exception is
 * reported (0 returned, indicator clear); a BaseException stays raised (-1 returned). */
static int
report_internal(PyObject *where)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyObject *exc = fetch_exception();
    PyObject *r = PyObject_CallFunctionObjArgs(g_internal_error, where, exc, NULL);
    Py_XDECREF(exc);
    if (r == NULL)
        PyErr_Clear(); /* reporting must not fail the call */
    Py_XDECREF(r);
    return 0;
}

static PyObject *
call_sdk(WrapperObject *self, PyObject *route, PyObject *const *args, size_t nargsf,
         PyObject *kwnames)
{
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    PyObject *tuple = PyTuple_New(n);
    PyObject *kwargs = PyDict_New();
    PyObject *result = NULL;
    if (tuple == NULL || kwargs == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(tuple, i, args[i]);
    }
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), args[n + i]) < 0)
                goto done;
        }
    }
    result = PyObject_CallFunctionObjArgs(g_sdk_call, route, self->site, self->fn, tuple,
                                          kwargs, NULL);
done:
    Py_XDECREF(tuple);
    Py_XDECREF(kwargs);
    return result;
}

/* finish(frame, index, site, t0, t1, pseq, exc): new reference or NULL. */
static PyObject *
call_finish(WrapperObject *self, PyObject *frame, int64_t t0, int64_t t1, int64_t pseq,
            PyObject *exc)
{
    PyObject *a = PyLong_FromLongLong(t0), *b = PyLong_FromLongLong(t1);
    PyObject *p = PyLong_FromLongLong(pseq), *r = NULL;
    if (a != NULL && b != NULL && p != NULL)
        r = PyObject_CallFunctionObjArgs(g_finish, frame, self->index_obj, self->site, a, b, p,
                                         exc, NULL);
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(p);
    return r;
}

static inline int
as_int64(PyObject *o, int64_t *out)
{
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* [seq, root, base, None, None]: a frame of kronicler.otel.current (new reference or NULL). */
static PyObject *
new_frame(PyObject *seq, PyObject *root, PyObject *base)
{
    PyObject *frame = PyList_New(5);
    if (frame == NULL)
        return NULL;
    Py_INCREF(seq);
    Py_INCREF(root);
    Py_INCREF(base);
    Py_INCREF(Py_None);
    Py_INCREF(Py_None);
    PyList_SET_ITEM(frame, 0, seq);
    PyList_SET_ITEM(frame, 1, root);
    PyList_SET_ITEM(frame, 2, base);
    PyList_SET_ITEM(frame, 3, Py_None);
    PyList_SET_ITEM(frame, 4, Py_None);
    return frame;
}

static PyObject *
wrapper_vectorcall(WrapperObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    PyObject *fn = self->fn;
    if (g_var == NULL) /* not installed: only a plain call is possible */
        return PyObject_Vectorcall(fn, args, nargsf, kwnames);

    /* 1. has the global provider changed, or did Kronicler ask to look again? */
    PyObject *provider = PyDict_GetItemWithError(g_trace_dict, g_key_provider);
    PyObject *expected = provider ? PyDict_GetItemWithError(g_tracer_dict, g_key_expected) : NULL;
    if (provider == NULL || provider != expected) {
        PyErr_Clear();
        PyObject *route = PyObject_CallNoArgs(g_resolve);
        if (route == NULL)
            return NULL;
        if (route != Py_None) {
            PyObject *result = route == g_plain
                                   ? PyObject_Vectorcall(fn, args, nargsf, kwnames)
                                   : call_sdk(self, route, args, nargsf, kwnames);
            Py_DECREF(route);
            return result;
        }
        Py_DECREF(route);
    }

    /* 2. a frame for this call, made current */
    PyObject *value = NULL, *frame = NULL, *token = NULL, *seq_obj = NULL;
    int64_t seq = g_counter->next++, root = 0, pseq = 0;
    if (PyContextVar_Get(g_var, NULL, &value) < 0)
        goto start_failed;
    if (value == NULL) {
        PyErr_SetString(PyExc_LookupError, "OTel's context variable has no value");
        goto start_failed;
    }
    seq_obj = PyLong_FromLongLong(seq);
    if (seq_obj == NULL)
        goto start_failed;
    int truth;
    if (PyList_CheckExact(value) && PyList_GET_SIZE(value) >= 3 &&
        (truth = PyObject_IsTrue(PyList_GET_ITEM(value, 1))) != 0) {
        /* a call of this process's trace is current */
        if (truth < 0 || as_int64(PyList_GET_ITEM(value, 0), &pseq) < 0 ||
            as_int64(PyList_GET_ITEM(value, 1), &root) < 0)
            goto start_failed;
        frame = new_frame(seq_obj, PyList_GET_ITEM(value, 1), PyList_GET_ITEM(value, 2));
        if (frame == NULL)
            goto start_failed;
    }
    else if ((truth = PyObject_IsTrue(value)) == 0) {
        /* an empty OTel context: a new trace */
        frame = new_frame(seq_obj, seq_obj, value);
        if (frame == NULL)
            goto start_failed;
        root = seq;
    }
    else {
        if (truth < 0)
            goto start_failed;
        /* the general rule, in Python */
        PyObject *got = PyObject_CallFunctionObjArgs(g_start, value, seq_obj, NULL);
        if (got == NULL)
            goto start_failed;
        if (!PyTuple_Check(got) || PyTuple_GET_SIZE(got) != 2 ||
            !PyList_CheckExact(PyTuple_GET_ITEM(got, 0)) ||
            PyList_GET_SIZE(PyTuple_GET_ITEM(got, 0)) < 5 ||
            as_int64(PyTuple_GET_ITEM(got, 1), &pseq) < 0 ||
            as_int64(PyList_GET_ITEM(PyTuple_GET_ITEM(got, 0), 1), &root) < 0) {
            Py_DECREF(got);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "current.start returned no (frame, pseq)");
            goto start_failed;
        }
        frame = PyTuple_GET_ITEM(got, 0);
        Py_INCREF(frame);
        Py_DECREF(got);
    }
    token = PyContextVar_Set(g_var, frame);
    if (token == NULL)
        goto start_failed;
    Py_CLEAR(value);
    Py_CLEAR(seq_obj);

    /* 3. the call, timed */
    int64_t t0 = now_ns();
    PyObject *result = PyObject_Vectorcall(fn, args, nargsf, kwnames);
    int64_t t1 = now_ns();

    if (result == NULL) {
        PyObject *exc = fetch_exception();
        if (PyContextVar_Reset(g_var, token) < 0 && report_internal(g_where_end) < 0) {
            Py_XDECREF(exc); /* a BaseException while resetting replaces the call's */
            goto failed_after_call;
        }
        PyObject *r = call_finish(self, frame, t0, t1, pseq, exc ? exc : Py_None);
        if (r == NULL) { /* finish never raises an Exception; a BaseException wins */
            Py_XDECREF(exc);
            goto failed_after_call;
        }
        Py_DECREF(r);
        Py_DECREF(token);
        Py_DECREF(frame);
        if (exc != NULL)
            restore_exception(exc);
        return NULL;
    }

    /* 4. the end: a compact record when nobody asked for the span */
    if (PyContextVar_Reset(g_var, token) < 0) {
        if (report_internal(g_where_end) < 0) {
            Py_DECREF(result);
            result = NULL;
        }
    }
    else if (PyList_GET_SIZE(frame) >= 4 && PyList_GET_ITEM(frame, 3) == Py_None) {
        Py_INCREF(g_done);
        PyList_SET_ITEM(frame, 3, g_done); /* replaces the None released below */
        Py_DECREF(Py_None);
        records_push(g_records, self->index, t0, t1, seq, root, pseq);
    }
    else {
        PyObject *r = call_finish(self, frame, t0, t1, pseq, Py_None);
        if (r == NULL && report_internal(g_where_end) < 0) {
            Py_DECREF(result);
            result = NULL;
        }
        Py_XDECREF(r);
    }
    Py_DECREF(token);
    Py_DECREF(frame);
    return result;

failed_after_call:
    Py_DECREF(token);
    Py_DECREF(frame);
    return NULL;

start_failed:
    Py_XDECREF(value);
    Py_XDECREF(seq_obj);
    Py_XDECREF(frame);
    if (report_internal(g_where_start) < 0)
        return NULL;
    return PyObject_Vectorcall(fn, args, nargsf, kwnames);
}

static PyObject *
wrapper_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *fn, *index_obj, *site;
    static char *kwlist[] = {"fn", "index", "site", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!O:Wrapper", kwlist, &fn, &PyLong_Type,
                                     &index_obj, &site))
        return NULL;
    if (!PyCallable_Check(fn)) {
        PyErr_Format(PyExc_ValueError, "Wrapper needs a callable, got %.100R", fn);
        return NULL;
    }
    int64_t index;
    if (as_int64(index_obj, &index) < 0)
        return NULL;
    WrapperObject *self = (WrapperObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = (vectorcallfunc)wrapper_vectorcall;
    Py_INCREF(fn);
    Py_INCREF(index_obj);
    Py_INCREF(site);
    self->fn = fn;
    self->index_obj = index_obj;
    self->site = site;
    self->index = index;
    return (PyObject *)self;
}

static int
wrapper_traverse(WrapperObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fn);
    Py_VISIT(self->site);
    Py_VISIT(self->index_obj);
    Py_VISIT(self->dict);
    return 0;
}

static int
wrapper_clear(WrapperObject *self)
{
    Py_CLEAR(self->fn);
    Py_CLEAR(self->site);
    Py_CLEAR(self->index_obj);
    Py_CLEAR(self->dict);
    return 0;
}

static void
wrapper_dealloc(WrapperObject *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    wrapper_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Binds like a function: obj.method gives a bound method of the wrapper. */
static PyObject *
wrapper_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        Py_INCREF(self);
        return self;
    }
    return PyMethod_New(self, obj);
}

static PyObject *
wrapper_repr(WrapperObject *self)
{
    return PyUnicode_FromFormat("<captured %R>", self->fn);
}

/* Pickled by reference, as a function is: module + qualified name. */
static PyObject *
wrapper_reduce(WrapperObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyObject_GetAttrString((PyObject *)self, "__qualname__");
}

static PyMethodDef wrapper_methods[] = {
    {"__reduce__", (PyCFunction)wrapper_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef wrapper_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject WrapperType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kronicler.otel._fastcall.Wrapper",
    .tp_basicsize = sizeof(WrapperObject),
    .tp_dealloc = (destructor)wrapper_dealloc,
    .tp_vectorcall_offset = offsetof(WrapperObject, vectorcall),
    .tp_repr = (reprfunc)wrapper_repr,
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = "Wrapper(fn, index, site): fn timed into the fast pipeline's records.",
    .tp_traverse = (traverseproc)wrapper_traverse,
    .tp_clear = (inquiry)wrapper_clear,
    .tp_weaklistoffset = offsetof(WrapperObject, weakrefs),
    .tp_methods = wrapper_methods,
    .tp_getset = wrapper_getset,
    .tp_descr_get = wrapper_descr_get,
    .tp_dictoffset = offsetof(WrapperObject, dict),
    .tp_new = wrapper_new,
};

/* -- module ---------------------------------------------------------------------------------- */
static PyObject *
install(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwds)
{
    PyObject *var, *trace_dict, *tracer_dict, *resolve, *plain, *sdk_call, *start, *finish;
    PyObject *internal_error, *done, *records, *counter;
    static char *kwlist[] = {"var", "trace_dict", "tracer_dict", "resolve", "plain",
                             "sdk_call", "start", "finish", "internal_error", "done",
                             "records", "counter", NULL};
    if (!PyArg_ParseTupleAndKeywords(
            args, kwds, "$O!O!O!OOOOOOOO!O!:install", kwlist, &PyContextVar_Type, &var,
            &PyDict_Type, &trace_dict, &PyDict_Type, &tracer_dict, &resolve, &plain, &sdk_call,
            &start, &finish, &internal_error, &done, &RecordsType, &records, &CounterType,
            &counter))
        return NULL;
#define SET(g, v)          \
    do {                   \
        Py_INCREF(v);      \
        Py_XSETREF(g, v);  \
    } while (0)
    SET(g_var, var);
    SET(g_trace_dict, trace_dict);
    SET(g_tracer_dict, tracer_dict);
    SET(g_resolve, resolve);
    SET(g_plain, plain);
    SET(g_sdk_call, sdk_call);
    SET(g_start, start);
    SET(g_finish, finish);
    SET(g_internal_error, internal_error);
    SET(g_done, done);
    Py_INCREF(records);
    Py_XSETREF(g_records, (RecordsObject *)records);
    Py_INCREF(counter);
    Py_XSETREF(g_counter, (CounterObject *)counter);
#undef SET
    Py_RETURN_NONE;
}

static PyObject *
now(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLongLong(now_ns());
}

static PyMethodDef module_methods[] = {
    {"install", (PyCFunction)(void (*)(void))install, METH_VARARGS | METH_KEYWORDS,
     "Give the wrappers the Python parts of the pipeline they call (once per process)."},
    {"now", now, METH_NOARGS, "The clock the wrappers read, in nanoseconds."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_fastcall",
    "The captured-call fast path in C (optional; see the source's opening comment).", -1,
    module_methods,
};

PyMODINIT_FUNC
PyInit__fastcall(void)
{
#ifdef Py_GIL_DISABLED
    PyErr_SetString(PyExc_ImportError, "the C fast path relies on the GIL");
    return NULL;
#endif
    if (PyType_Ready(&CounterType) < 0 || PyType_Ready(&RecordsType) < 0 ||
        PyType_Ready(&WrapperType) < 0)
        return NULL;
    g_key_provider = PyUnicode_InternFromString("_TRACER_PROVIDER");
    g_key_expected = PyUnicode_InternFromString("_expected");
    g_where_start = PyUnicode_InternFromString("start");
    g_where_end = PyUnicode_InternFromString("end");
    if (!g_key_provider || !g_key_expected || !g_where_start || !g_where_end)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    if (PyModule_AddStringConstant(m, "CLOCK", CLOCK_NAME) < 0 ||
        PyModule_AddIntConstant(m, "WIDTH", WIDTH) < 0 ||
        PyModule_AddObjectRef(m, "Counter", (PyObject *)&CounterType) < 0 ||
        PyModule_AddObjectRef(m, "Records", (PyObject *)&RecordsType) < 0 ||
        PyModule_AddObjectRef(m, "Wrapper", (PyObject *)&WrapperType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
