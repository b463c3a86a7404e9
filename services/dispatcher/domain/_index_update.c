/* Updates of the H3 index in C: an entry put into a bucket or popped out of it (`h3_index.Bucket`), and the live
 * map's position update (`LiveMap.apply_position`) down to the bucket that holds the unit.
 *
 * A unit pinging once a second almost never leaves its cell's sure disk (`H3Index.sure_disk`), so most updates are a
 * refresh of its packed coordinates in place, with no H3 call. One that leaves the disk gets its cell from H3's own
 * compiled `latlng_to_cell` (the C function h3-py exports to Cython modules, the one `h3.latlng_to_cell` calls) and is
 * moved here, when its layer already has a bucket for that cell: in Python, the H3 call, the two buckets and their
 * lists, dict and array took most of an update that moved (README, "Position updates, session 16"). A cell new to the
 * layer is left to `H3Index.relocate`, which works out the cell's geometry.
 *
 * The arithmetic is Python's: the epoch is the datetime's exact microseconds over a million, as `timestamp()` divides
 * them, and the unit vector is `h3_index.unit_vector`'s expression with libm (setup.py compiles without fused
 * multiply-add). tests/unit/test_live_map_eta_zones.py compares whole updates with the Python steps and checks the
 * index after churn; tests/unit/test_h3_index.py checks buckets against brute force.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <math.h>
#include <stdint.h>

#include "shared/native/civil_days.h"
#include "shared/native/latlng_to_cell.h"


typedef struct {
    PyObject *ts, *lat, *lon, *position, *position_epoch, *bucket, *slot, *coords, *timestamp, *entries, *cell,
        *cells, *frombytes;
    LatLngToCell latlng_to_cell;
} State;

static State *state_of(PyObject *module) { return (State *)PyModule_GetState(module); }

enum { STALE = 0, PLACED = 1, UNPLACED = 2 };

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

static int index_of(PyObject *owner, PyObject *name, Py_ssize_t *out) {
    PyObject *value = PyObject_GetAttr(owner, name);
    if (value == NULL) return -1;
    *out = PyLong_AsSsize_t(value);
    Py_DECREF(value);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static int set_number(PyObject *owner, PyObject *name, double value) {
    PyObject *boxed = PyFloat_FromDouble(value);
    if (boxed == NULL) return -1;
    int rc = PyObject_SetAttr(owner, name, boxed);
    Py_DECREF(boxed);
    return rc;
}

static int set_index(PyObject *owner, PyObject *name, Py_ssize_t value) {
    PyObject *boxed = PyLong_FromSsize_t(value);
    if (boxed == NULL) return -1;
    int rc = PyObject_SetAttr(owner, name, boxed);
    Py_DECREF(boxed);
    return rc;
}

/* A bucket's parts (`Bucket`'s slots), held for one operation. */
typedef struct {
    PyObject *entries, *coords;
} Parts;

static void release_parts(Parts *p) {
    Py_CLEAR(p->entries);
    Py_CLEAR(p->coords);
}

static int parts_of(State *st, PyObject *bucket, Parts *p) {
    *p = (Parts){PyObject_GetAttr(bucket, st->entries), PyObject_GetAttr(bucket, st->coords)};
    if (p->entries && p->coords) {
        if (PyList_Check(p->entries)) return 0;
        PyErr_SetString(PyExc_TypeError, "a bucket holds a list of entries and an array('d')");
    }
    release_parts(p);
    return -1;
}

/* Where `entry` says it is held: its bucket (a new reference) and its slot there. -1 with an error set. */
static int held_at(State *st, PyObject *entry, PyObject **bucket, Py_ssize_t *slot) {
    *bucket = PyObject_GetAttr(entry, st->bucket);
    if (*bucket == NULL) return -1;
    if (index_of(entry, st->slot, slot) == 0) return 0;
    Py_CLEAR(*bucket);
    return -1;
}

/* The entry is in `entries` at `slot`, as it says: the bucket's one consistency check before it writes. */
static int is_at(PyObject *entries, Py_ssize_t slot, PyObject *entry) {
    if (slot >= 0 && slot < PyList_GET_SIZE(entries) && PyList_GET_ITEM(entries, slot) == entry) return 0;
    PyErr_SetString(PyExc_ValueError, "the entry is not at the slot of the bucket it names");
    return -1;
}

/* A bucket's array('d') holds the cell's sure disk (centre x, y, z, cosine of the radius), then four numbers (x, y,
 * z, epoch) per slot: true when `view` is such an array with room for `slot`. */
static int holds_slot(const Py_buffer *view, Py_ssize_t slot) {
    return view->format != NULL && strcmp(view->format, "d") == 0 && slot >= 0 &&
           (slot + 2) * 4 * (Py_ssize_t)sizeof(double) <= view->len;
}

static const char NOT_A_SLOT[] = "the slot is not in its bucket's array('d') of the sure disk and four numbers a slot";

/* The four packed numbers of `slot` in a bucket's array, read into `quad` or written from it. */
static int packed(PyObject *coords, Py_ssize_t slot, double quad[4], int write) {
    Py_buffer view;
    if (PyObject_GetBuffer(coords, &view, (write ? PyBUF_WRITABLE : PyBUF_SIMPLE) | PyBUF_FORMAT) < 0) return -1;
    int ok = holds_slot(&view, slot);
    if (ok) {
        double *at = (double *)view.buf + 4 * (slot + 1);
        if (write)
            memcpy(at, quad, 4 * sizeof(double));
        else
            memcpy(quad, at, 4 * sizeof(double));
    }
    PyBuffer_Release(&view);
    if (!ok) PyErr_SetString(PyExc_ValueError, NOT_A_SLOT);
    return ok ? 0 : -1;
}

/* `Bucket.put`: place the entry with its packed numbers (x, y, z, epoch), or refresh them if it is held here
 * already; 1 when it is new here, 0 when refreshed, -1 with an error set. A new entry takes the next slot and learns
 * its bucket and slot: an entry is in one bucket at a time and knows where, so the bucket keeps no table of its
 * own from key to slot (a cache miss on every move when it did). */
static int put(State *st, PyObject *bucket, PyObject *entry, double quad[4]) {
    Parts p;
    if (parts_of(st, bucket, &p) < 0) return -1;
    int rc = -1;
    PyObject *held = NULL, *boxed = NULL, *bytes = NULL, *grown = NULL;
    Py_ssize_t slot;
    if (held_at(st, entry, &held, &slot) < 0) goto done;
    if (held == bucket) {
        if (is_at(p.entries, slot, entry) == 0 && packed(p.coords, slot, quad, 1) == 0) rc = 0;
        goto done;
    }
    slot = PyList_GET_SIZE(p.entries);
    boxed = PyLong_FromSsize_t(slot);
    bytes = PyBytes_FromStringAndSize((const char *)quad, 4 * sizeof(double));
    if (boxed == NULL || bytes == NULL) goto done;
    grown = PyObject_CallMethodOneArg(p.coords, st->frombytes, bytes);
    if (grown != NULL && PyList_Append(p.entries, entry) == 0 && PyObject_SetAttr(entry, st->bucket, bucket) == 0 &&
        PyObject_SetAttr(entry, st->slot, boxed) == 0)
        rc = 1;
done:
    Py_XDECREF(grown);
    Py_XDECREF(bytes);
    Py_XDECREF(boxed);
    Py_XDECREF(held);
    release_parts(&p);
    return rc;
}

/* `Bucket.pop`: take the entry out, the last one moving into its slot; 1 when it was here, 0 when not, -1 with an
 * error set. The entry taken out is told it is held nowhere (bucket None, slot -1). */
static int pop(State *st, PyObject *bucket, PyObject *entry) {
    Parts p;
    if (parts_of(st, bucket, &p) < 0) return -1;
    int rc = -1;
    PyObject *held = NULL;
    Py_ssize_t slot, last = PyList_GET_SIZE(p.entries) - 1;
    if (held_at(st, entry, &held, &slot) < 0) goto done;
    if (held != bucket) {
        rc = 0;
        goto done;
    }
    if (is_at(p.entries, slot, entry) < 0) goto done;
    if (PyObject_SetAttr(entry, st->bucket, Py_None) < 0 || set_index(entry, st->slot, -1) < 0) goto done;
    if (slot != last) {
        PyObject *moved = PyList_GET_ITEM(p.entries, last);
        double quad[4];
        Py_INCREF(moved);
        PyList_SetItem(p.entries, slot, moved);
        if (set_index(moved, st->slot, slot) < 0 || packed(p.coords, last, quad, 0) < 0 ||
            packed(p.coords, slot, quad, 1) < 0)
            goto done;
    }
    if (PyList_SetSlice(p.entries, last, last + 1, NULL) < 0 ||
        PySequence_DelSlice(p.coords, 4 * (last + 1), 4 * (last + 2)) < 0)
        goto done;
    rc = 1;
done:
    Py_XDECREF(held);
    release_parts(&p);
    return rc;
}

/* The common update: the unit's new position (`quad`) is inside the sure disk at the head of its bucket's array, so
 * its cell is the same and its numbers are written at its slot. 1 when refreshed, 0 when the position is outside the
 * disk, -1 with an error set. One buffer of one object is read for both. */
static int refresh_inside(State *st, PyObject *unit, PyObject *bucket, double quad[4]) {
    PyObject *coords = PyObject_GetAttr(bucket, st->coords);
    if (coords == NULL) return -1;
    Py_buffer view;
    if (PyObject_GetBuffer(coords, &view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
        Py_DECREF(coords);
        return -1;
    }
    const double *disk = (const double *)view.buf;
    Py_ssize_t slot = 0; /* a bucket holding the unit has at least its slot */
    int rc = -1;
    if (!holds_slot(&view, slot))
        PyErr_SetString(PyExc_ValueError, NOT_A_SLOT);
    else if (!(quad[0] * disk[0] + quad[1] * disk[1] + quad[2] * disk[2] > disk[3]))
        rc = 0;
    else if (index_of(unit, st->slot, &slot) < 0)
        rc = -1;
    else if (!holds_slot(&view, slot))
        PyErr_SetString(PyExc_ValueError, NOT_A_SLOT);
    else {
        memcpy((double *)view.buf + 4 * (slot + 1), quad, 4 * sizeof(double));
        rc = 1;
    }
    PyBuffer_Release(&view);
    Py_DECREF(coords);
    return rc;
}

/* Write the unit's packed numbers at `slot` in `bucket`'s array. */
static int refresh(State *st, PyObject *bucket, Py_ssize_t slot, double quad[4]) {
    PyObject *coords = PyObject_GetAttr(bucket, st->coords);
    if (coords == NULL) return -1;
    int rc = packed(coords, slot, quad, 1);
    Py_DECREF(coords);
    return rc;
}

/* Move the unit held in `from` (at `slot`) to where its new position (`quad`) belongs: refreshed in place if H3 gives
 * the same cell, else into its layer's bucket for the new cell (the old bucket dropped from the layer once empty).
 * 1 when placed, 0 when the layer has no bucket for the new cell, -1 with an error set. */
static int move(State *st, PyObject *unit, PyObject *from, Py_ssize_t slot, double lat, double lon,
                double quad[4]) {
    PyObject *cell = PyObject_GetAttr(from, st->cell);
    if (cell == NULL) return -1;
    int rc = -1;
    PyObject *cells = NULL, *new_cell = NULL, *to = NULL, *left = NULL;
    uint64_t old = PyLong_AsUnsignedLongLong(cell);
    if (old == (uint64_t)-1 && PyErr_Occurred()) goto done;
    uint64_t now = st->latlng_to_cell(lat, lon, (int)((old >> 52) & 0xF), 0);
    if (now == 1) goto done;
    if (now == old) {
        rc = refresh(st, from, slot, quad) < 0 ? -1 : 1;
        goto done;
    }
    cells = PyObject_GetAttr(from, st->cells);
    new_cell = PyLong_FromUnsignedLongLong(now);
    if (cells == NULL || new_cell == NULL) goto done;
    if (!PyDict_Check(cells)) {
        PyErr_SetString(PyExc_TypeError, "a bucket's layer is a dict of buckets by cell");
        goto done;
    }
    to = Py_XNewRef(PyDict_GetItemWithError(cells, new_cell));
    if (to == NULL) {
        rc = PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    int popped = pop(st, from, unit);
    if (popped == 0) PyErr_SetString(PyExc_ValueError, "the unit is not in the bucket it names");
    if (popped != 1 || put(st, to, unit, quad) < 0) goto done;
    left = PyObject_GetAttr(from, st->entries);
    if (left == NULL) goto done;
    if (!PyList_Check(left)) {
        PyErr_SetString(PyExc_TypeError, "a bucket's entries are a list");
        goto done;
    }
    rc = PyList_GET_SIZE(left) > 0 || PyDict_DelItem(cells, cell) == 0 ? 1 : -1;
done:
    Py_XDECREF(left);
    Py_XDECREF(to);
    Py_XDECREF(new_cell);
    Py_XDECREF(cells);
    Py_DECREF(cell);
    return rc;
}

/* The module's functions take positional arguments only (METH_FASTCALL): false, with a TypeError, for a wrong count. */
static int takes(Py_ssize_t nargs, Py_ssize_t wanted, const char *usage) {
    if (nargs == wanted) return 1;
    PyErr_SetString(PyExc_TypeError, usage);
    return 0;
}

PyDoc_STRVAR(place_doc,
             "place(unit, position, /) -> int\n"
             "\n"
             "Apply `position` to `unit` (a live_map.UnitState) if it is newer: its position and\n"
             "epoch. Then place it in the index: refreshed in the bucket holding it while the position is inside that\n"
             "bucket's sure disk, else moved to the bucket of the cell H3 gives, when its layer has one.\n"
             "0: not newer, nothing done; 1: applied and placed; 2: applied, the index must place the unit\n"
             "(`H3Index.relocate`: it is held nowhere yet, or its layer has no bucket for the new cell).");

static PyObject *place(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (!takes(nargs, 2, "place takes (unit, position)")) return NULL;
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
    double quad[4] = {cos_phi * cos(lam), cos_phi * sin(lam), sin(phi), epoch};
    if (PyObject_SetAttr(unit, st->position, position) < 0 || set_number(unit, st->position_epoch, epoch) < 0)
        return NULL;
    PyObject *bucket = PyObject_GetAttr(unit, st->bucket);
    if (bucket == NULL) return NULL;
    Py_ssize_t slot;
    if (bucket == Py_None) {
        rc = UNPLACED;
    } else {
        rc = refresh_inside(st, unit, bucket, quad);
        if (rc == 0) rc = index_of(unit, st->slot, &slot) < 0 ? -1 : move(st, unit, bucket, slot, lat, lon, quad);
        rc = rc < 0 ? -1 : rc == 0 ? UNPLACED : PLACED;
    }
    Py_DECREF(bucket);
    return rc < 0 ? NULL : PyLong_FromLong(rc);
}

PyDoc_STRVAR(put_doc,
             "put(bucket, entry, x, y, z, epoch, /) -> bool\n"
             "\n"
             "`h3_index.Bucket.put`: place the entry with its unit vector and position epoch, or refresh them\n"
             "if it is held there; True when it is new in the bucket.");

static PyObject *put_entry(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (!takes(nargs, 6, "put takes (bucket, entry, x, y, z, epoch)")) return NULL;
    double quad[4];
    for (int i = 0; i < 4; i++) {
        quad[i] = PyFloat_AsDouble(args[2 + i]);
        if (quad[i] == -1.0 && PyErr_Occurred()) return NULL;
    }
    int rc = put(state_of(module), args[0], args[1], quad);
    return rc < 0 ? NULL : PyBool_FromLong(rc);
}

PyDoc_STRVAR(pop_doc,
             "pop(bucket, entry, /) -> bool\n"
             "\n"
             "`h3_index.Bucket.pop`: take the entry out (the last one moves into its slot); True when\n"
             "it was there.");

static PyObject *pop_entry(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (!takes(nargs, 2, "pop takes (bucket, entry)")) return NULL;
    int rc = pop(state_of(module), args[0], args[1]);
    return rc < 0 ? NULL : PyBool_FromLong(rc);
}

static PyMethodDef methods[] = {
    {"place", (PyCFunction)(void (*)(void))place, METH_FASTCALL, place_doc},
    {"put", (PyCFunction)(void (*)(void))put_entry, METH_FASTCALL, put_doc},
    {"pop", (PyCFunction)(void (*)(void))pop_entry, METH_FASTCALL, pop_doc},
    {NULL, NULL, 0, NULL},
};

/* The attribute names the module reads, interned once, in the order of `NAMES`. */
static const char *NAMES[] = {"ts",     "lat",       "lon",     "position", "position_epoch", "bucket",   "slot",
                              "coords", "timestamp", "entries", "cell",     "cells",          "frombytes"};
enum { NAME_COUNT = sizeof(NAMES) / sizeof(NAMES[0]) };

static void name_fields(State *st, PyObject **fields[NAME_COUNT]) {
    PyObject **in_order[NAME_COUNT] = {&st->ts,     &st->lat,    &st->lon,       &st->position, &st->position_epoch,
                                       &st->bucket, &st->slot,   &st->coords,    &st->timestamp, &st->entries,
                                       &st->cell,   &st->cells,  &st->frombytes};
    memcpy(fields, in_order, sizeof(in_order));
}

static int exec_module(PyObject *module) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return -1;
    State *st = state_of(module);
    PyObject **fields[NAME_COUNT];
    name_fields(st, fields);
    for (size_t i = 0; i < NAME_COUNT; i++) {
        *fields[i] = PyUnicode_InternFromString(NAMES[i]);
        if (*fields[i] == NULL) return -1;
    }
    st->latlng_to_cell = import_latlng_to_cell();
    return st->latlng_to_cell == NULL ? -1 : 0;
}

static int clear(PyObject *module) {
    PyObject **fields[NAME_COUNT];
    name_fields(state_of(module), fields);
    for (size_t i = 0; i < NAME_COUNT; i++) Py_CLEAR(*fields[i]);
    return 0;
}

static void free_module(void *module) { clear((PyObject *)module); }

static PyModuleDef_Slot module_slots[] = {{Py_mod_exec, exec_module}, {0, NULL}};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT,
    .m_name = "services.dispatcher.domain._index_update",
    .m_doc = "Updates of the H3 index in C: bucket put and pop, and the live map's position update.",
    .m_size = sizeof(State),
    .m_methods = methods,
    .m_slots = module_slots,
    .m_clear = clear,
    .m_free = free_module,
};

PyMODINIT_FUNC PyInit__index_update(void) { return PyModuleDef_Init(&definition); }
