/* The live map's position update in C: the steps of `LiveMap.apply_position` up to the index, and its common case,
 * a unit still inside its cell's sure disk (`H3Index.sure_disk`) refreshed in place in its bucket.
 *
 * A unit pinging once a second almost never leaves that disk, so the update costs no H3 call; what was left in Python
 * was attribute traffic, the datetime's epoch and three trigonometric calls, which this does on C doubles, boxing only
 * the epoch it stores on the unit (the unit vector goes into the bucket's array; `UnitState.xyz` works it out again
 * when the index places the unit). The arithmetic is Python's: the epoch is the datetime's exact microseconds over a
 * million, as `timestamp()` divides them, and the unit vector is `h3_index.unit_vector`'s expression with libm
 * (setup.py compiles without fused multiply-add). tests/unit/test_live_map_eta_zones.py compares whole updates with
 * the Python steps. The bucket and slot holding the unit are kept on it by the index (`h3_index.Located`).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <math.h>

#include "shared/native/civil_days.h"

typedef struct {
    PyObject *ts, *lat, *lon, *position, *position_epoch, *bucket, *slot, *inside, *coords, *timestamp;
} State;

static State *state_of(PyObject *module) { return (State *)PyModule_GetState(module); }

enum { STALE = 0, PLACED = 1, LEFT_CELL = 2 };

/* Seconds since the epoch as `ts.timestamp()` gives them; computed here for a datetime in `datetime.UTC`, asked of
 * the datetime otherwise (another tzinfo says its own offset). -1 with an error set. */
static int epoch_of(State *st, PyObject *ts, double *out) {
    if (PyDateTime_Check(ts) && PyDateTime_DATE_GET_TZINFO(ts) == PyDateTime_TimeZone_UTC) {
        int64_t days = days_from_civil(PyDateTime_GET_YEAR(ts), PyDateTime_GET_MONTH(ts), PyDateTime_GET_DAY(ts));
        int64_t seconds = days * 86400 + PyDateTime_DATE_GET_HOUR(ts) * 3600 + PyDateTime_DATE_GET_MINUTE(ts) * 60 +
                          PyDateTime_DATE_GET_SECOND(ts);
        *out = (double)(seconds * 1000000 + PyDateTime_DATE_GET_MICROSECOND(ts)) / 1e6;
        return 0;
    }
    PyObject *value = PyObject_CallMethodNoArgs(ts, st->timestamp);
    if (value == NULL) return -1;
    *out = PyFloat_AsDouble(value);
    Py_DECREF(value);
    return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

static int number_of(PyObject *owner, PyObject *name, double *out) {
    PyObject *value = PyObject_GetAttr(owner, name);
    if (value == NULL) return -1;
    *out = PyFloat_AsDouble(value);
    Py_DECREF(value);
    return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

static int set_number(PyObject *owner, PyObject *name, double value) {
    PyObject *boxed = PyFloat_FromDouble(value);
    if (boxed == NULL) return -1;
    int rc = PyObject_SetAttr(owner, name, boxed);
    Py_DECREF(boxed);
    return rc;
}

/* Refresh the unit's packed coordinates in the bucket that holds it (`unit.bucket`, at `unit.slot`, both kept by the
 * index) when the new position is inside the bucket's sure disk: 1 when refreshed, 0 when the unit left the disk or
 * is held nowhere, -1 with an error set. */
static int refresh_in_bucket(State *st, PyObject *unit, double x, double y, double z, double epoch) {
    PyObject *bucket = PyObject_GetAttr(unit, st->bucket);
    if (bucket == NULL) return -1;
    int rc = 0;
    PyObject *inside = NULL, *slot = NULL, *coords = NULL;
    if (bucket == Py_None) goto done;
    inside = PyObject_GetAttr(bucket, st->inside);
    if (inside == NULL) goto fail;
    if (!PyTuple_Check(inside) || PyTuple_GET_SIZE(inside) != 4) {
        PyErr_SetString(PyExc_TypeError, "a bucket's sure disk is (x, y, z, cos radius)");
        goto fail;
    }
    double disk[4];
    for (int i = 0; i < 4; i++) {
        disk[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(inside, i));
        if (disk[i] == -1.0 && PyErr_Occurred()) goto fail;
    }
    if (!(x * disk[0] + y * disk[1] + z * disk[2] > disk[3])) goto done;
    slot = PyObject_GetAttr(unit, st->slot);
    if (slot == NULL) goto fail;
    Py_ssize_t at = PyLong_AsSsize_t(slot);
    if (at == -1 && PyErr_Occurred()) goto fail;
    coords = PyObject_GetAttr(bucket, st->coords);
    if (coords == NULL) goto fail;
    Py_buffer view;
    if (PyObject_GetBuffer(coords, &view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) goto fail;
    if (view.format == NULL || strcmp(view.format, "d") != 0 || at < 0 ||
        (at + 1) * 4 * (Py_ssize_t)sizeof(double) > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "the unit's slot is not in its bucket's array('d') of four numbers a slot");
        goto fail;
    }
    double *packed = (double *)view.buf + 4 * at;
    packed[0] = x, packed[1] = y, packed[2] = z, packed[3] = epoch;
    PyBuffer_Release(&view);
    rc = 1;
    goto done;
fail:
    rc = -1;
done:
    Py_XDECREF(coords);
    Py_XDECREF(slot);
    Py_XDECREF(inside);
    Py_DECREF(bucket);
    return rc;
}

PyDoc_STRVAR(place_doc,
             "place(unit, position, /) -> int\n"
             "\n"
             "Apply `position` to `unit` (a live_map.UnitState) if it is newer: its position and epoch. Then, if\n"
             "the position is inside the sure disk of the bucket holding the unit, refresh the unit's packed unit\n"
             "vector and epoch there. 0: not newer, nothing done; 1: applied and placed; 2: applied, the index\n"
             "must place the unit (`H3Index.relocate`).");

static PyObject *place(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "place takes (unit, position)");
        return NULL;
    }
    State *st = state_of(module);
    PyObject *unit = args[0], *position = args[1];
    double epoch, held, lat, lon;
    PyObject *ts = PyObject_GetAttr(position, st->ts);
    if (ts == NULL) return NULL;
    int rc = epoch_of(st, ts, &epoch);
    Py_DECREF(ts);
    if (rc < 0 || number_of(unit, st->position_epoch, &held) < 0) return NULL;
    if (epoch <= held) return PyLong_FromLong(STALE);
    if (number_of(position, st->lat, &lat) < 0 || number_of(position, st->lon, &lon) < 0) return NULL;
    const double to_radians = Py_MATH_PI / 180.0; /* math.radians */
    double phi = lat * to_radians, lam = lon * to_radians;
    double cos_phi = cos(phi);
    double x = cos_phi * cos(lam), y = cos_phi * sin(lam), z = sin(phi);
    if (PyObject_SetAttr(unit, st->position, position) < 0 || set_number(unit, st->position_epoch, epoch) < 0)
        return NULL;
    rc = refresh_in_bucket(st, unit, x, y, z, epoch);
    if (rc < 0) return NULL;
    return PyLong_FromLong(rc ? PLACED : LEFT_CELL);
}

static PyMethodDef methods[] = {
    {"place", (PyCFunction)(void (*)(void))place, METH_FASTCALL, place_doc},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *module) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return -1;
    State *st = state_of(module);
    const char *names[] = {"ts", "lat", "lon", "position", "position_epoch", "bucket", "slot", "inside", "coords",
                           "timestamp"};
    PyObject **fields[] = {&st->ts,     &st->lat,  &st->lon,    &st->position, &st->position_epoch,
                           &st->bucket, &st->slot, &st->inside, &st->coords,   &st->timestamp};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        *fields[i] = PyUnicode_InternFromString(names[i]);
        if (*fields[i] == NULL) return -1;
    }
    return 0;
}

static int clear(PyObject *module) {
    State *st = state_of(module);
    Py_CLEAR(st->ts);
    Py_CLEAR(st->lat);
    Py_CLEAR(st->lon);
    Py_CLEAR(st->position);
    Py_CLEAR(st->position_epoch);
    Py_CLEAR(st->bucket);
    Py_CLEAR(st->slot);
    Py_CLEAR(st->inside);
    Py_CLEAR(st->coords);
    Py_CLEAR(st->timestamp);
    return 0;
}

static void free_module(void *module) { clear((PyObject *)module); }

static PyModuleDef_Slot module_slots[] = {{Py_mod_exec, exec_module}, {0, NULL}};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT,
    .m_name = "services.dispatcher.domain._live_update",
    .m_doc = "The live map's position update in C: a newer fix applied to a unit and refreshed in its bucket.",
    .m_size = sizeof(State),
    .m_methods = methods,
    .m_slots = module_slots,
    .m_clear = clear,
    .m_free = free_module,
};

PyMODINIT_FUNC PyInit__live_update(void) { return PyModuleDef_Init(&definition); }
