/* The inner loop of the nearest search in C: one bucket's packed coordinates offered to the k best held.
 *
 * The same steps as the Python loop it replaced in h3_index.py (`_Search.scan`, plain distance): a dot product
 * screens out entries that cannot beat the k-th best (loosened by a margin), the survivors are ranked by the exact
 * squared chord, an entry is read and `accept` asked only then, and the heap of the k best is the same Python list
 * of (-chord2, id(entry), chord2, entry), kept with heapq. tests/unit/test_h3_index.py checks the whole search
 * against brute force.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

typedef struct {
    PyObject *heappush;
    PyObject *heapreplace;
} State;

static State *state_of(PyObject *module) { return (State *)PyModule_GetState(module); }

/* The k-th best squared chord held, or infinity while fewer than k are held; -1 with an error set. */
static int worst_of(PyObject *heap, Py_ssize_t k, double *worst) {
    if (PyList_GET_SIZE(heap) < k) {
        *worst = INFINITY;
        return 0;
    }
    PyObject *top = PyList_GET_ITEM(heap, 0);
    if (!PyTuple_Check(top) || PyTuple_GET_SIZE(top) < 1) {
        PyErr_SetString(PyExc_TypeError, "heap items are (-chord2, id, chord2, entry) tuples");
        return -1;
    }
    double key = PyFloat_AsDouble(PyTuple_GET_ITEM(top, 0));
    if (key == -1.0 && PyErr_Occurred()) return -1;
    *worst = -key;
    return 0;
}

PyDoc_STRVAR(scan_doc,
             "scan(coords, entries, qx, qy, qz, since, heap, k, accept, epsilon_cos) -> None\n\n"
             "Offer every entry of a bucket (coords: array('d') of x, y, z, position epoch per entry) positioned at\n"
             "or after `since` to `heap`, the k best by squared chord from the query (qx, qy, qz).");

static PyObject *scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    State *st = state_of(module);
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "scan takes 10 arguments");
        return NULL;
    }
    PyObject *entries = args[1], *heap = args[6], *accept = args[8];
    if (!PyList_Check(entries) || !PyList_Check(heap)) {
        PyErr_SetString(PyExc_TypeError, "entries and heap must be lists");
        return NULL;
    }
    double qx = PyFloat_AsDouble(args[2]), qy = PyFloat_AsDouble(args[3]), qz = PyFloat_AsDouble(args[4]);
    double since = PyFloat_AsDouble(args[5]), epsilon = PyFloat_AsDouble(args[9]);
    Py_ssize_t k = PyLong_AsSsize_t(args[7]);
    if (PyErr_Occurred()) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE | PyBUF_FORMAT) < 0) return NULL;
    if (view.format == NULL || strcmp(view.format, "d") != 0 || view.len % (4 * sizeof(double)) != 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "coords must be an array('d') of four numbers per entry");
        return NULL;
    }
    const double *c = (const double *)view.buf;
    Py_ssize_t n = view.len / (Py_ssize_t)(4 * sizeof(double));
    if (n > PyList_GET_SIZE(entries)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "fewer entries than coordinates");
        return NULL;
    }
    double worst;
    if (worst_of(heap, k, &worst) < 0) goto fail;
    double least_dot = 1.0 - worst / 2.0 - epsilon;
    for (Py_ssize_t slot = 0; slot < n; slot++, c += 4) {
        if (!(c[0] * qx + c[1] * qy + c[2] * qz > least_dot && c[3] >= since)) continue;
        double dx = c[0] - qx, dy = c[1] - qy, dz = c[2] - qz;
        double chord2 = dx * dx + dy * dy + dz * dz;
        if (chord2 >= worst) continue;
        PyObject *entry = PyList_GET_ITEM(entries, slot);
        if (accept != Py_None) {
            PyObject *verdict = PyObject_CallOneArg(accept, entry);
            if (verdict == NULL) goto fail;
            int yes = PyObject_IsTrue(verdict);
            Py_DECREF(verdict);
            if (yes < 0) goto fail;
            if (!yes) continue;
        }
        PyObject *item = Py_BuildValue("(dNdO)", -chord2, PyLong_FromVoidPtr(entry), chord2, entry);
        if (item == NULL) goto fail;
        int filling = PyList_GET_SIZE(heap) < k;
        PyObject *done = PyObject_CallFunctionObjArgs(filling ? st->heappush : st->heapreplace, heap, item, NULL);
        Py_DECREF(item);
        if (done == NULL) goto fail;
        Py_DECREF(done);
        if (filling && PyList_GET_SIZE(heap) < k) continue;
        if (worst_of(heap, k, &worst) < 0) goto fail;
        least_dot = 1.0 - worst / 2.0 - epsilon;
    }
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
fail:
    PyBuffer_Release(&view);
    return NULL;
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL, scan_doc},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *module) {
    State *st = state_of(module);
    PyObject *heapq = PyImport_ImportModule("heapq");
    if (heapq == NULL) return -1;
    st->heappush = PyObject_GetAttrString(heapq, "heappush");
    st->heapreplace = PyObject_GetAttrString(heapq, "heapreplace");
    Py_DECREF(heapq);
    return st->heappush != NULL && st->heapreplace != NULL ? 0 : -1;
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
    return 0;
}

static void free_module(void *module) { clear((PyObject *)module); }

static PyModuleDef_Slot slots[] = {{Py_mod_exec, exec_module}, {0, NULL}};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT,
    .m_name = "services.dispatcher.domain._bucket_scan",
    .m_doc = "The nearest search's inner loop in C: a bucket's entries offered to the k best held.",
    .m_size = sizeof(State),
    .m_methods = methods,
    .m_slots = slots,
    .m_traverse = traverse,
    .m_clear = clear,
    .m_free = free_module,
};

PyMODINIT_FUNC PyInit__bucket_scan(void) { return PyModuleDef_Init(&definition); }
