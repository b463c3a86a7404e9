/* The `kuaijing.positions` record as the compiled decoders write it: its fields from `v` to `fix` in the contract's
 * order (PositionRecord in shared/contract/schemas.py), the GNSS names (the Gnss enum), and the constant values,
 * each made once per module. The intake adds platform_id, h3, source and received_at. */
#ifndef KUAIJING_POSITION_RECORD_H
#define KUAIJING_POSITION_RECORD_H

#include <Python.h>

enum { K_V, K_KIND, K_UNIT_ID, K_TS, K_LAT, K_LON, K_SPEED, K_HEADING, K_ALTITUDE, K_GNSS, K_SATELLITES, K_HDOP, K_SEQ,
       K_CRS, K_FIX, N_KEYS };
#define RECORD_KEYS (N_KEYS + 4) /* a record's dict is made at this size: it never grows, the intake's keys included */
static const char *KEY_NAMES[N_KEYS] = {"v",    "kind",       "unit_id", "ts",  "lat", "lon", "speed_kmh", "heading_deg",
                                        "altitude_m", "gnss", "satellites", "hdop", "seq", "crs", "fix"};

enum { G_BDS, G_GPS, G_BDS_GPS, G_GLONASS, G_GALILEO, G_OTHER, N_GNSS };
static const char *GNSS_NAMES[N_GNSS] = {"BDS", "GPS", "BDS+GPS", "GLONASS", "GALILEO", "OTHER"};

typedef struct {
    PyObject *keys[N_KEYS]; /* interned */
    PyObject *gnss[N_GNSS]; /* interned */
    PyObject *one, *position, *wgs84;
} RecordNames;

static int record_names_init(RecordNames *names) {
    for (int i = 0; i < N_KEYS; i++)
        if ((names->keys[i] = PyUnicode_InternFromString(KEY_NAMES[i])) == NULL) return -1;
    for (int i = 0; i < N_GNSS; i++)
        if ((names->gnss[i] = PyUnicode_InternFromString(GNSS_NAMES[i])) == NULL) return -1;
    if ((names->position = PyUnicode_InternFromString("position")) == NULL) return -1;
    if ((names->wgs84 = PyUnicode_InternFromString("WGS84")) == NULL) return -1;
    if ((names->one = PyLong_FromLong(1)) == NULL) return -1;
    return 0;
}

static void record_names_clear(RecordNames *names) {
    for (int i = 0; i < N_KEYS; i++) Py_CLEAR(names->keys[i]);
    for (int i = 0; i < N_GNSS; i++) Py_CLEAR(names->gnss[i]);
    Py_CLEAR(names->position);
    Py_CLEAR(names->wgs84);
    Py_CLEAR(names->one);
}

#endif
