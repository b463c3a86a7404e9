/* The JSON position ping's hot path in C: a decoded ping object straight to the record ingest publishes for it.
 *
 * It answers only for a position ping it can take whole and returns None for anything else: a video ping, a GCJ-02
 * position, a timestamp in any form but the plainest RFC 3339, a value of another type or outside the contract's
 * ranges. `accept_ping`'s pydantic path (services/ingest/domain/telemetry.py) is the reference: it takes every ping
 * None was returned for and says what is wrong, so each rule's message has one place.
 * tests/unit/test_json_ping_compiled.py checks that both publish the same bytes for the same ping.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <math.h>
#include <stdint.h>

#include "shared/native/civil_days.h"
#include "shared/native/position_record.h"

#define LONGEST_UNIT_ID 64
#define EXACT_INTEGERS 9007199254740992.0 /* 2**53: a larger integer where a float is due is left to pydantic */

typedef struct {
    RecordNames names; /* the positions record's keys and constants */
} State;

static State *state_of(PyObject *module) { return (State *)PyModule_GetState(module); }

enum { TAKEN, DECLINED, FAILED };

/* The value of `key`, borrowed; NULL when it is absent, or with an error set if comparing a key raised. */
static PyObject *field(PyObject *ping, PyObject *key) { return PyDict_GetItemWithError(ping, key); }

/* A JSON number where the contract wants a float: floats as they are, integers as the float pydantic makes of them
 * (booleans are not numbers here, as in pydantic's strict mode). A new reference in *out, or DECLINED. */
static int number(PyObject *value, double low, double high, int low_open, int high_open, PyObject **out) {
    double x;
    if (PyFloat_CheckExact(value)) {
        x = PyFloat_AS_DOUBLE(value);
    } else if (PyLong_CheckExact(value)) {
        x = PyLong_AsDouble(value);
        if (x == -1.0 && PyErr_Occurred()) return FAILED;
        if (fabs(x) >= EXACT_INTEGERS) return DECLINED;
    } else {
        return DECLINED;
    }
    if (!isfinite(x) || x < low || x > high || (low_open && x == low) || (high_open && x == high)) return DECLINED;
    *out = PyFloat_CheckExact(value) ? Py_NewRef(value) : PyFloat_FromDouble(x);
    return *out == NULL ? FAILED : TAKEN;
}

/* As `number`, for an optional field: absent or null is None. */
static int optional_number(PyObject *ping, PyObject *key, double low, double high, int low_open, int high_open,
                           PyObject **out) {
    PyObject *value = field(ping, key);
    if (value == NULL) {
        if (PyErr_Occurred()) return FAILED;
        *out = Py_NewRef(Py_None);
        return TAKEN;
    }
    if (value == Py_None) {
        *out = Py_NewRef(Py_None);
        return TAKEN;
    }
    return number(value, low, high, low_open, high_open, out);
}

/* An optional strict integer (no bool, no float), at least `low` when `bounded`. */
static int optional_integer(PyObject *ping, PyObject *key, int bounded, long low, PyObject **out) {
    PyObject *value = field(ping, key);
    if (value == NULL && PyErr_Occurred()) return FAILED;
    if (value == NULL || value == Py_None) {
        *out = Py_NewRef(Py_None);
        return TAKEN;
    }
    if (!PyLong_CheckExact(value)) return DECLINED;
    if (bounded) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (x == -1 && !overflow && PyErr_Occurred()) return FAILED;
        if (overflow < 0 || (!overflow && x < low)) return DECLINED;
    }
    *out = Py_NewRef(value);
    return TAKEN;
}

static int digits(const char *s, int n, int *out) {
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        x = x * 10 + (s[i] - '0');
    }
    *out = x;
    return 1;
}

/* `YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+HH:MM|-HH:MM)` as an aware UTC datetime; DECLINED for any other text (pydantic
 * reads more forms, and says what is wrong with the rest). */
static int utc_timestamp(PyObject *value, PyObject **out) {
    if (!PyUnicode_CheckExact(value) || !PyUnicode_IS_ASCII(value)) return DECLINED;
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    const char *s = (const char *)PyUnicode_DATA(value);
    int year, month, day, hour, minute, second, micro = 0, offset_h = 0, offset_m = 0, sign = 0;
    if (n < 20 || !digits(s, 4, &year) || s[4] != '-' || !digits(s + 5, 2, &month) || s[7] != '-' ||
        !digits(s + 8, 2, &day) || s[10] != 'T' || !digits(s + 11, 2, &hour) || s[13] != ':' ||
        !digits(s + 14, 2, &minute) || s[16] != ':' || !digits(s + 17, 2, &second))
        return DECLINED;
    Py_ssize_t at = 19;
    if (s[at] == '.') {
        Py_ssize_t start = ++at;
        while (at < n && at - start < 6 && s[at] >= '0' && s[at] <= '9') micro = micro * 10 + (s[at++] - '0');
        if (at == start || (at < n && s[at] >= '0' && s[at] <= '9')) return DECLINED;
        for (Py_ssize_t i = at - start; i < 6; i++) micro *= 10;
    }
    if (at + 1 == n && s[at] == 'Z') {
        sign = 0;
    } else if (at + 6 == n && (s[at] == '+' || s[at] == '-') && digits(s + at + 1, 2, &offset_h) &&
               s[at + 3] == ':' && digits(s + at + 4, 2, &offset_m)) {
        sign = s[at] == '+' ? 1 : -1;
        if (offset_h > 23 || offset_m > 59) return DECLINED;
    } else {
        return DECLINED;
    }
    if (year < 1 || !is_date(year, month, day) || hour > 23 || minute > 59 || second > 59) return DECLINED;
    int64_t seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
    seconds -= (int64_t)sign * (offset_h * 3600 + offset_m * 60);
    int64_t days = seconds >= 0 ? seconds / 86400 : -((-seconds + 86399) / 86400);
    int64_t rest = seconds - days * 86400;
    civil_from_days(days, &year, &month, &day);
    if (year < 1 || year > 9999) return DECLINED;
    *out = PyDateTimeAPI->DateTime_FromDateAndTime(year, month, day, (int)(rest / 3600), (int)(rest / 60 % 60),
                                                   (int)(rest % 60), micro, PyDateTime_TimeZone_UTC,
                                                   PyDateTimeAPI->DateTimeType);
    return *out == NULL ? FAILED : TAKEN;
}

/* The ping's own fields as the record has them, in `KEY_NAMES` order from K_UNIT_ID to K_FIX. */
static int record_fields(RecordNames *n, PyObject *ping, PyObject **f) {
    PyObject **k = n->keys;
    PyObject *kind = field(ping, k[K_KIND]);
    if (kind == NULL) return PyErr_Occurred() ? FAILED : DECLINED;
    if (!PyUnicode_CheckExact(kind) || PyUnicode_Compare(kind, n->position) != 0) return PyErr_Occurred() ? FAILED : DECLINED;

    PyObject *unit_id = field(ping, k[K_UNIT_ID]);
    if (unit_id == NULL) return PyErr_Occurred() ? FAILED : DECLINED;
    if (!PyUnicode_CheckExact(unit_id) || PyUnicode_GET_LENGTH(unit_id) < 1 ||
        PyUnicode_GET_LENGTH(unit_id) > LONGEST_UNIT_ID)
        return DECLINED;
    f[K_UNIT_ID] = Py_NewRef(unit_id);

    PyObject *ts = field(ping, k[K_TS]);
    if (ts == NULL) return PyErr_Occurred() ? FAILED : DECLINED;
    int rc = utc_timestamp(ts, &f[K_TS]);
    if (rc != TAKEN) return rc;

    PyObject *lat = field(ping, k[K_LAT]), *lon = lat == NULL ? NULL : field(ping, k[K_LON]);
    if (lon == NULL) return PyErr_Occurred() ? FAILED : DECLINED;
    if ((rc = number(lat, -90, 90, 0, 0, &f[K_LAT])) != TAKEN) return rc;
    if ((rc = number(lon, -180, 180, 0, 0, &f[K_LON])) != TAKEN) return rc;
    if ((rc = optional_number(ping, k[K_SPEED], 0, 400, 0, 0, &f[K_SPEED])) != TAKEN) return rc;
    if ((rc = optional_number(ping, k[K_HEADING], 0, 360, 0, 1, &f[K_HEADING])) != TAKEN) return rc;
    if ((rc = optional_number(ping, k[K_ALTITUDE], -HUGE_VAL, HUGE_VAL, 0, 0, &f[K_ALTITUDE])) != TAKEN) return rc;
    if ((rc = optional_number(ping, k[K_HDOP], 0, HUGE_VAL, 1, 0, &f[K_HDOP])) != TAKEN) return rc;
    if ((rc = optional_integer(ping, k[K_SATELLITES], 1, 0, &f[K_SATELLITES])) != TAKEN) return rc;
    if ((rc = optional_integer(ping, k[K_SEQ], 0, 0, &f[K_SEQ])) != TAKEN) return rc;

    PyObject *gnss = field(ping, k[K_GNSS]);
    if (gnss == NULL && PyErr_Occurred()) return FAILED;
    if (gnss == NULL || gnss == Py_None) {
        f[K_GNSS] = Py_NewRef(Py_None);
    } else {
        if (!PyUnicode_CheckExact(gnss)) return DECLINED;
        for (int i = 0; i < N_GNSS && f[K_GNSS] == NULL; i++)
            if (PyUnicode_Compare(gnss, n->gnss[i]) == 0) f[K_GNSS] = Py_NewRef(n->gnss[i]);
        if (f[K_GNSS] == NULL) return PyErr_Occurred() ? FAILED : DECLINED;
    }

    PyObject *crs = field(ping, k[K_CRS]);
    if (crs == NULL && PyErr_Occurred()) return FAILED;
    if (crs != NULL && (!PyUnicode_CheckExact(crs) || PyUnicode_Compare(crs, n->wgs84) != 0))
        return PyErr_Occurred() ? FAILED : DECLINED; /* GCJ-02 is converted by the Python path */
    f[K_CRS] = Py_NewRef(n->wgs84);

    PyObject *fix = field(ping, k[K_FIX]);
    if (fix == NULL && PyErr_Occurred()) return FAILED;
    if (fix != NULL && fix != Py_True && fix != Py_False) return DECLINED;
    f[K_FIX] = Py_NewRef(fix == NULL ? Py_True : fix);
    return TAKEN;
}

PyDoc_STRVAR(position_record_doc,
             "position_record(ping: object) -> dict | None\n\n"
             "The kuaijing.positions record's fields from `v` to `fix` for a decoded JSON position ping in WGS-84\n"
             "that the contract accepts as it stands: what accept_ping's pydantic path publishes, `ts` an aware UTC\n"
             "datetime. None for any other value (the pydantic path validates it, or says what is wrong).");

static PyObject *position_record(PyObject *module, PyObject *ping) {
    RecordNames *n = &state_of(module)->names;
    if (!PyDict_CheckExact(ping)) Py_RETURN_NONE;
    PyObject *f[N_KEYS] = {NULL};
    int rc = record_fields(n, ping, f);
    PyObject *record = NULL;
    if (rc == TAKEN && (record = _PyDict_NewPresized(RECORD_KEYS)) != NULL) {
        f[K_V] = Py_NewRef(n->one);
        f[K_KIND] = Py_NewRef(n->position);
        for (int i = 0; i < N_KEYS; i++) {
            if (PyDict_SetItem(record, n->keys[i], f[i]) < 0) {
                Py_CLEAR(record);
                break;
            }
        }
    }
    for (int i = 0; i < N_KEYS; i++) Py_XDECREF(f[i]);
    if (rc == DECLINED) Py_RETURN_NONE;
    return record; /* NULL with the error set when rc is FAILED or the dict could not be built */
}

static PyMethodDef methods[] = {
    {"position_record", (PyCFunction)position_record, METH_O, position_record_doc},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *module) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return -1;
    return record_names_init(&state_of(module)->names);
}

static void free_module(void *module) { record_names_clear(&state_of((PyObject *)module)->names); }

static PyModuleDef_Slot slots[] = {{Py_mod_exec, exec_module}, {0, NULL}};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT,
    .m_name = "services.ingest.domain._json_ping",
    .m_doc = "The JSON position ping's hot path in C; accept_ping's pydantic path is the reference.",
    .m_size = sizeof(State),
    .m_methods = methods,
    .m_slots = slots,
    .m_free = free_module,
};

PyMODINIT_FUNC PyInit__json_ping(void) { return PyModuleDef_Init(&definition); }
