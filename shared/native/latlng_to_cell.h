/* h3-py's compiled `latlng_to_cell`, as its Cython module exports it to other compiled modules (`__pyx_capi__`, what
 * a Cython `cimport` of its .pxd uses): the very function `h3.latlng_to_cell` calls, without its Python wrapper, its
 * Cython dispatch and its `'{:x}'.format`. Declared `cpdef H3int latlng_to_cell(double, double, int) except 1`: 1,
 * never a cell, means an error is set, the one h3 raises. The capsule's name is the signature; a release that
 * changes it fails the import with a message saying so, not a call (pyproject asks for h3 >= 4.5, < 5). */
#ifndef KUAIJING_LATLNG_TO_CELL_H
#define KUAIJING_LATLNG_TO_CELL_H

#include <Python.h>
#include <stdint.h>

typedef uint64_t (*LatLngToCell)(double lat, double lng, int res, int skip_dispatch);
static const char LATLNG_TO_CELL_SIGNATURE[] = "H3Index (double, double, int, int __pyx_skip_dispatch)";

/* The function, or NULL with ImportError set. */
static LatLngToCell import_latlng_to_cell(void) {
    PyObject *latlng = PyImport_ImportModule("h3._cy.latlng");
    if (latlng == NULL) return NULL;
    PyObject *capi = PyObject_GetAttrString(latlng, "__pyx_capi__");
    Py_DECREF(latlng);
    if (capi == NULL) return NULL;
    PyObject *capsule = PyMapping_GetItemString(capi, "latlng_to_cell");
    Py_DECREF(capi);
    if (capsule == NULL) return NULL;
    LatLngToCell function = (LatLngToCell)PyCapsule_GetPointer(capsule, LATLNG_TO_CELL_SIGNATURE);
    Py_DECREF(capsule);
    if (function != NULL) return function;
    PyErr_Format(PyExc_ImportError, "h3's compiled latlng_to_cell is not `%s`: this h3 release is not supported",
                 LATLNG_TO_CELL_SIGNATURE);
    return NULL;
}

#endif
