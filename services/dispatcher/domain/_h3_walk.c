/* The inner loops of the nearest search in C: a ring of cells, and a bucket's packed coordinates offered to the k
 * best held.
 *
 * The same steps as the Python loops they replaced in h3_index.py (`_Search.scan` and the ring loop of
 * `H3Index.nearest`): cells beyond the k-th best held are skipped with the same bound, an entry is read (and
 * `weight` and `accept` asked) only once its distance could make the answer, and the k best are the same Python
 * list of (-key, id(entry), chord2, entry), kept with heapq. The arithmetic is Python's (IEEE doubles, libm, no
 * fused multiply-add: setup.py compiles with -ffp-contract=off). tests/unit/test_h3_index.py checks whole
 * searches, by distance and by ETA, against brute force.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

typedef struct {
    PyObject *heappush;
    PyObject *heapreplace;
    PyObject *coords_name, *entries_name;
} State;

static State *state_of(PyObject *module) { return (State *)PyModule_GetState(module); }

/* The search's terms, as `_Terms` in h3_index.py lays them out. */
typedef struct {
    double qx, qy, qz, since;
    PyObject *heap; /* list of (-key, id(entry), chord2, entry), a max-heap on key */
    Py_ssize_t k;
    PyObject *accept;  /* callable or None */
    PyObject *weight;  /* callable, or None for plain distance (key = squared chord) */
    double min_weight; /* with a weight: no entry's weight is below it */
    double eps_cos, eps_rad, max_angle;
    /* the pruning bound, recomputed when the k-th best changes */
    double bound_for, cos_w, sin_w;
    int prunes;
} Terms;

enum { T_QX, T_QY, T_QZ, T_SINCE, T_HEAP, T_K, T_ACCEPT, T_WEIGHT, T_MIN_WEIGHT, T_EPS_COS, T_EPS_RAD, T_MAX_ANGLE, T_N };

static int terms_of(PyObject *tuple, Terms *t) {
    if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != T_N) {
        PyErr_SetString(PyExc_TypeError, "terms must be a _Terms tuple");
        return -1;
    }
#define NUMBER(i) PyFloat_AsDouble(PyTuple_GET_ITEM(tuple, i))
    t->qx = NUMBER(T_QX), t->qy = NUMBER(T_QY), t->qz = NUMBER(T_QZ), t->since = NUMBER(T_SINCE);
    t->min_weight = NUMBER(T_MIN_WEIGHT), t->eps_cos = NUMBER(T_EPS_COS), t->eps_rad = NUMBER(T_EPS_RAD);
    t->max_angle = NUMBER(T_MAX_ANGLE);
#undef NUMBER
    t->heap = PyTuple_GET_ITEM(tuple, T_HEAP);
    t->k = PyLong_AsSsize_t(PyTuple_GET_ITEM(tuple, T_K));
    t->accept = PyTuple_GET_ITEM(tuple, T_ACCEPT);
    t->weight = PyTuple_GET_ITEM(tuple, T_WEIGHT);
    t->bound_for = NAN;
    if (PyErr_Occurred()) return -1;
    if (!PyList_Check(t->heap)) {
        PyErr_SetString(PyExc_TypeError, "the heap must be a list");
        return -1;
    }
    return 0;
}

/* The k-th best key held, or infinity while fewer than k are held; -1 with an error set. */
static int worst_of(const Terms *t, double *worst) {
    if (PyList_GET_SIZE(t->heap) < t->k) {
        *worst = INFINITY;
        return 0;
    }
    PyObject *top = PyList_GET_ITEM(t->heap, 0);
    if (!PyTuple_Check(top) || PyTuple_GET_SIZE(top) < 1) {
        PyErr_SetString(PyExc_TypeError, "heap items are (-key, id, chord2, entry) tuples");
        return -1;
    }
    double key = PyFloat_AsDouble(PyTuple_GET_ITEM(top, 0));
    if (key == -1.0 && PyErr_Occurred()) return -1;
    *worst = -key;
    return 0;
}

static double angle_of(double chord2) { return 2.0 * asin(fmin(1.0, sqrt(chord2) / 2.0)); }

/* Hold the entry among the k best: heappush while filling, heapreplace once full (the caller knows it beats the
 * k-th best). */
static int keep(State *st, Terms *t, double key, double chord2, PyObject *entry) {
    PyObject *item = Py_BuildValue("(dNdO)", -key, PyLong_FromVoidPtr(entry), chord2, entry);
    if (item == NULL) return -1;
    PyObject *fn = PyList_GET_SIZE(t->heap) < t->k ? st->heappush : st->heapreplace;
    PyObject *done = PyObject_CallFunctionObjArgs(fn, t->heap, item, NULL);
    Py_DECREF(item);
    if (done == NULL) return -1;
    Py_DECREF(done);
    return 0;
}

/* 1 when accept is None or says yes, 0 when it says no, -1 with an error set. */
static int accepted(const Terms *t, PyObject *entry) {
    if (t->accept == Py_None) return 1;
    PyObject *verdict = PyObject_CallOneArg(t->accept, entry);
    if (verdict == NULL) return -1;
    int yes = PyObject_IsTrue(verdict);
    Py_DECREF(verdict);
    return yes;
}

/* Every entry of one bucket positioned at or after `since`, offered to the k best. */
static int offer(State *st, Terms *t, PyObject *bucket) {
    PyObject *coords = PyObject_GetAttr(bucket, st->coords_name);
    if (coords == NULL) return -1;
    PyObject *entries = PyObject_GetAttr(bucket, st->entries_name);
    if (entries == NULL) {
        Py_DECREF(coords);
        return -1;
    }
    int rc = -1;
    Py_buffer view;
    if (PyObject_GetBuffer(coords, &view, PyBUF_SIMPLE | PyBUF_FORMAT) < 0) goto done;
    /* The array starts with the cell's sure disk (four numbers), then four numbers per entry. */
    if (view.format == NULL || strcmp(view.format, "d") != 0 || view.len % (4 * sizeof(double)) != 0 ||
        view.len == 0 || !PyList_Check(entries) ||
        view.len / (Py_ssize_t)(4 * sizeof(double)) - 1 > PyList_GET_SIZE(entries)) {
        PyErr_SetString(PyExc_TypeError,
                        "a bucket holds an array('d') of its sure disk and four numbers per entry, and its entries");
        goto release;
    }
    const double *c = (const double *)view.buf + 4;
    Py_ssize_t n = view.len / (Py_ssize_t)(4 * sizeof(double)) - 1;
    double qx = t->qx, qy = t->qy, qz = t->qz, worst;
    if (worst_of(t, &worst) < 0) goto release;
    if (t->weight == Py_None) {
        /* A dot product (chord^2 = 2 - 2 q.p) screens out the far entries in fewer operations; the survivors are
         * then ranked by the exact squared chord, so the screen's rounding (loosened by a margin) changes nothing. */
        double least_dot = 1.0 - worst / 2.0 - t->eps_cos;
        for (Py_ssize_t slot = 0; slot < n; slot++, c += 4) {
            if (!(c[0] * qx + c[1] * qy + c[2] * qz > least_dot && c[3] >= t->since)) continue;
            double dx = c[0] - qx, dy = c[1] - qy, dz = c[2] - qz;
            double chord2 = dx * dx + dy * dy + dz * dz;
            if (chord2 >= worst) continue;
            PyObject *entry = PyList_GET_ITEM(entries, slot);
            int yes = accepted(t, entry);
            if (yes < 0) goto release;
            if (!yes) continue;
            if (keep(st, t, chord2, chord2, entry) < 0 || worst_of(t, &worst) < 0) goto release;
            least_dot = 1.0 - worst / 2.0 - t->eps_cos;
        }
    } else {
        for (Py_ssize_t slot = 0; slot < n; slot++, c += 4) {
            double dx = c[0] - qx, dy = c[1] - qy, dz = c[2] - qz;
            double chord2 = dx * dx + dy * dy + dz * dz;
            double angle = angle_of(chord2);
            if (!(angle * t->min_weight < worst && c[3] >= t->since)) continue;
            PyObject *entry = PyList_GET_ITEM(entries, slot);
            PyObject *w = PyObject_CallOneArg(t->weight, entry);
            if (w == NULL) goto release;
            double weight = PyFloat_AsDouble(w);
            Py_DECREF(w);
            if (weight == -1.0 && PyErr_Occurred()) goto release;
            double key = angle * weight;
            if (!(key < worst)) continue;
            int yes = accepted(t, entry);
            if (yes < 0) goto release;
            if (!yes) continue;
            if (keep(st, t, key, chord2, entry) < 0 || worst_of(t, &worst) < 0) goto release;
        }
    }
    rc = 0;
release:
    PyBuffer_Release(&view);
done:
    Py_DECREF(coords);
    Py_DECREF(entries);
    return rc;
}

/* True when nothing in the cell whose geometry (centre x, y, z, cos and sin of its circumradius) is `g` can beat
 * the k-th best held: `_Search._bound` in h3_index.py, which says why. -1 with an error set. */
static int beyond(Terms *t, const double *g) {
    if (PyList_GET_SIZE(t->heap) < t->k) return 0;
    double worst;
    if (worst_of(t, &worst) < 0) return -1;
    if (worst != t->bound_for) {
        double angle = t->weight == Py_None ? angle_of(worst) : worst / t->min_weight;
        angle += t->eps_rad;
        t->bound_for = worst;
        t->cos_w = cos(angle);
        t->sin_w = sin(angle);
        t->prunes = angle <= t->max_angle;
    }
    if (!t->prunes) return 0;
    return t->qx * g[0] + t->qy * g[1] + t->qz * g[2] <= t->cos_w * g[3] - t->sin_w * g[4] - t->eps_cos;
}

PyDoc_STRVAR(scan_doc,
             "scan(bucket, terms) -> None\n\n"
             "Offer every entry of the bucket positioned at or after the search's `since` to its k best.");

static PyObject *scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "scan takes (bucket, terms)");
        return NULL;
    }
    Terms t;
    if (terms_of(args[1], &t) < 0 || offer(state_of(module), &t, args[0]) < 0) return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(walk_ring_doc,
             "walk_ring(cells, geometry, layers, every_cell_beyond, terms) -> bool\n\n"
             "One ring of the walk: each cell's bucket in each layer is scanned unless the cell is beyond the k-th\n"
             "best held. Empty cells are tested too while `every_cell_beyond` may still hold; returns whether it\n"
             "does after this ring (then the walk stops).");

static PyObject *walk_ring(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    State *st = state_of(module);
    if (nargs != 5 || !PyTuple_Check(args[0]) || !PyList_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "walk_ring takes (cells tuple, geometry, layers list, bool, terms)");
        return NULL;
    }
    PyObject *cells = args[0], *layers = args[2];
    int every = PyObject_IsTrue(args[3]);
    Terms t;
    if (every < 0 || terms_of(args[4], &t) < 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE | PyBUF_FORMAT) < 0) return NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(cells);
    if (view.format == NULL || strcmp(view.format, "d") != 0 ||
        view.len != count * 5 * (Py_ssize_t)sizeof(double)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "geometry must be an array('d') of five numbers per cell");
        return NULL;
    }
    const double *geometry = (const double *)view.buf;
    Py_ssize_t layer_count = PyList_GET_SIZE(layers);
    for (Py_ssize_t at = 0; at < count; at++) {
        PyObject *cell = PyTuple_GET_ITEM(cells, at);
        for (Py_ssize_t i = 0; i < layer_count; i++) {
            PyObject *buckets = PyList_GET_ITEM(layers, i);
            if (!PyDict_Check(buckets)) {
                PyErr_SetString(PyExc_TypeError, "layers are dicts of cell to bucket");
                goto fail;
            }
            PyObject *bucket = PyDict_GetItemWithError(buckets, cell); /* borrowed */
            if (bucket == NULL) {
                if (PyErr_Occurred()) goto fail;
                if (!every) continue;
            }
            int far = beyond(&t, geometry + 5 * at);
            if (far < 0) goto fail;
            if (far) break;
            every = 0;
            if (bucket != NULL) {
                Py_INCREF(bucket); /* accept or weight could, in principle, change the dict */
                int rc = offer(st, &t, bucket);
                Py_DECREF(bucket);
                if (rc < 0) goto fail;
            }
        }
    }
    PyBuffer_Release(&view);
    return PyBool_FromLong(every);
fail:
    PyBuffer_Release(&view);
    return NULL;
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL, scan_doc},
    {"walk_ring", (PyCFunction)(void (*)(void))walk_ring, METH_FASTCALL, walk_ring_doc},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *module) {
    State *st = state_of(module);
    PyObject *heapq = PyImport_ImportModule("heapq");
    if (heapq == NULL) return -1;
    st->heappush = PyObject_GetAttrString(heapq, "heappush");
    st->heapreplace = PyObject_GetAttrString(heapq, "heapreplace");
    Py_DECREF(heapq);
    st->coords_name = PyUnicode_InternFromString("coords");
    st->entries_name = PyUnicode_InternFromString("entries");
    return st->heappush && st->heapreplace && st->coords_name && st->entries_name ? 0 : -1;
}

static int traverse(PyObject *module, visitproc visit, void *arg) {
    State *st = state_of(module);
    Py_VISIT(st->heappush);
    Py_VISIT(st->heapreplace);
    return 0;
}

static int clear(PyObject *module) {
    State *st = state_of(module);
    Py_CLEAR(st->heappush);
    Py_CLEAR(st->heapreplace);
    Py_CLEAR(st->coords_name);
    Py_CLEAR(st->entries_name);
    return 0;
}

static void free_module(void *module) { clear((PyObject *)module); }

static PyModuleDef_Slot slots[] = {{Py_mod_exec, exec_module}, {0, NULL}};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT,
    .m_name = "services.dispatcher.domain._h3_walk",
    .m_doc = "The nearest search's inner loop in C: a bucket's entries offered to the k best held.",
    .m_size = sizeof(State),
    .m_methods = methods,
    .m_slots = slots,
    .m_traverse = traverse,
    .m_clear = clear,
    .m_free = free_module,
};

PyMODINIT_FUNC PyInit__h3_walk(void) { return PyModuleDef_Init(&definition); }
