/* The H3 cell of a point as the contract's hex text, through h3's own compiled `latlng_to_cell`
 * (shared/native/latlng_to_cell.h).
 *
 * Every accepted position carries its resolution-9 cell. `h3.latlng_to_cell` costs a Python wrapper, a Cython
 * dispatch and a format call around the library's: most of the 1.6 µs it takes. This calls the same function and
 * writes the text itself; an error the library reports (a coordinate that is not finite, a resolution out of range)
 * is raised as h3 raises it. tests/unit/test_geo.py checks that both give the same answer for the same point.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdio.h>

#include "shared/native/latlng_to_cell.h"

typedef struct {
    LatLngToCell latlng_to_cell;
} State;

PyDoc_STRVAR(cell_doc, "cell(lat: float, lon: float, resolution: int) -> str\n\n"
                       "h3.latlng_to_cell(lat, lon, resolution), computed by the same library function.");

static PyObject *cell(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    State *st = (State *)PyModule_GetState(module);
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "cell takes (lat, lon, resolution)");
        return NULL;
    }
    double lat = PyFloat_AsDouble(args[0]), lon = PyFloat_AsDouble(args[1]);
    long resolution = PyLong_AsLong(args[2]);
    if (PyErr_Occurred()) return NULL;
    if (resolution < INT_MIN || resolution > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "resolution out of range");
        return NULL;
    }
    uint64_t index = st->latlng_to_cell(lat, lon, (int)resolution, 0);
    if (index == 1 && PyErr_Occurred()) return NULL; /* `except 1`: the library's error, raised as h3 raises it */
    char text[17];
    int length = snprintf(text, sizeof text, "%llx", (unsigned long long)index);
    return PyUnicode_FromStringAndSize(text, length);
}

static PyMethodDef methods[] = {
    {"cell", (PyCFunction)(void (*)(void))cell, METH_FASTCALL, cell_doc},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *module) {
    State *st = (State *)PyModule_GetState(module);
    st->latlng_to_cell = import_latlng_to_cell();
    return st->latlng_to_cell == NULL ? -1 : 0;
}

static PyModuleDef_Slot slots[] = {{Py_mod_exec, exec_module}, {0, NULL}};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT,
    .m_name = "shared._h3_cell",
    .m_doc = "The H3 cell of a point as hex text, through the h3 package's compiled latlng_to_cell.",
    .m_size = sizeof(State),
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC PyInit__h3_cell(void) { return PyModuleDef_Init(&definition); }
