/* The JT/T 808 hot path in C: a whole frame, and a 0x0200 body straight to the record ingest publishes for it.
 *
 * Each function answers only for input it can take whole and returns None for anything else: a malformed frame, an
 * encrypted body, a location with video alarm items or without a time. The Python functions beside it
 * (shared/jt808/header.py, bodies.py, pings.py) are the reference: they take every input None was returned for and
 * raise the error that says what is wrong, so there is one place for each rule's message.
 * tests/unit/test_jt808_compiled.py checks that both give the same answer for the same bytes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>
#include <stdio.h>

#include "shared/native/civil_days.h"
#include "shared/native/latlng_to_cell.h"
#include "shared/native/position_record.h"

#define FLAG 0x7E
#define ESCAPE 0x7D
#define LONGEST_CONTENT 4096 /* longer frames (none a conforming terminal sends) take the Python path */

#define SOUTH (1u << 2)
#define WEST (1u << 3)
#define POSITIONED (1u << 1)
#define GPS_USED (1u << 18)
#define BEIDOU_USED (1u << 19)
#define GLONASS_USED (1u << 20)
#define GALILEO_USED (1u << 21)

typedef struct {
    PyObject *header_type; /* shared.jt808.header.Header, a named tuple */
    PyObject *frame_type;  /* shared.jt808.header.Frame, a named tuple */
    RecordNames names; /* the positions record's keys and constants */
    LatLngToCell latlng_to_cell;
} State;

static State *state_of(PyObject *module) { return (State *)PyModule_GetState(module); }

static uint32_t u16(const uint8_t *p) { return ((uint32_t)p[0] << 8) | p[1]; }
static uint32_t u32(const uint8_t *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }

/* A named tuple built as tuple.__new__ builds one: allocated as the subtype, items filled in order. Steals refs. */
static PyObject *named_tuple(PyObject *type, PyObject **items, Py_ssize_t n) {
    PyObject *obj = ((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, n);
    if (obj == NULL) {
        for (Py_ssize_t i = 0; i < n; i++) Py_XDECREF(items[i]);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) PyTuple_SET_ITEM(obj, i, items[i]);
    return obj;
}

static int bind_types(State *st) {
    if (st->header_type != NULL) return 0;
    PyObject *header = PyImport_ImportModule("shared.jt808.header");
    if (header == NULL) return -1;
    st->header_type = PyObject_GetAttrString(header, "Header");
    st->frame_type = PyObject_GetAttrString(header, "Frame");
    Py_DECREF(header);
    if (st->header_type == NULL || st->frame_type == NULL) {
        Py_CLEAR(st->header_type);
        Py_CLEAR(st->frame_type);
        return -1;
    }
    return 0;
}

/* BCD digits as text; 0 when a nibble is not a digit (the Python path then says which). */
static int bcd_text(const uint8_t *p, Py_ssize_t n, char *out) {
    for (Py_ssize_t i = 0; i < n; i++) {
        uint8_t hi = p[i] >> 4, lo = p[i] & 0x0F;
        if (hi > 9 || lo > 9) return 0;
        out[2 * i] = (char)('0' + hi);
        out[2 * i + 1] = (char)('0' + lo);
    }
    return 1;
}

/* The header of one layout, or NULL with no error set when this layout does not fit (as `_header` raising). */
static PyObject *header_of(State *st, const uint8_t *raw, Py_ssize_t len, int wide, Py_ssize_t *size) {
    uint32_t props = u16(raw + 2);
    int subpackaged = (props & 0x2000) != 0;
    Py_ssize_t phone_at = wide ? 5 : 4, phone_len = wide ? 10 : 6;
    *size = phone_at + phone_len + 2 + (subpackaged ? 4 : 0);
    if (len < *size) return NULL;
    char phone[20];
    if (!bcd_text(raw + phone_at, phone_len, phone)) return NULL;
    Py_ssize_t serial_at = phone_at + phone_len;
    PyObject *items[10];
    items[0] = PyLong_FromUnsignedLong(u16(raw));
    items[1] = PyLong_FromUnsignedLong(props & 0x03FF);
    items[2] = PyLong_FromUnsignedLong((props >> 10) & 0x07);
    items[3] = Py_NewRef(subpackaged ? Py_True : Py_False);
    items[4] = Py_NewRef((props & 0x4000) ? Py_True : Py_False);
    items[5] = wide ? PyLong_FromUnsignedLong(raw[4]) : Py_NewRef(Py_None);
    items[6] = PyUnicode_FromStringAndSize(phone, 2 * phone_len);
    items[7] = PyLong_FromUnsignedLong(u16(raw + serial_at));
    items[8] = subpackaged ? PyLong_FromUnsignedLong(u16(raw + serial_at + 2)) : Py_NewRef(Py_None);
    items[9] = subpackaged ? PyLong_FromUnsignedLong(u16(raw + serial_at + 4)) : Py_NewRef(Py_None);
    for (int i = 0; i < 10; i++) {
        if (items[i] == NULL) {
            for (int j = 0; j < 10; j++) Py_XDECREF(items[j]);
            return NULL;
        }
    }
    return named_tuple(st->header_type, items, 10);
}

PyDoc_STRVAR(parse_frame_doc,
             "parse_frame(wire: bytes) -> Frame | None\n\n"
             "The frame, as shared.jt808.parse_frame returns it, or None when the Python path must look at it.");

static PyObject *parse_frame(PyObject *module, PyObject *arg) {
    State *st = state_of(module);
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "parse_frame takes bytes");
        return NULL;
    }
    if (bind_types(st) < 0) return NULL;
    const uint8_t *wire = (const uint8_t *)PyBytes_AS_STRING(arg);
    Py_ssize_t n = PyBytes_GET_SIZE(arg);
    if (n < 2 || wire[0] != FLAG || wire[n - 1] != FLAG || n - 2 > LONGEST_CONTENT) Py_RETURN_NONE;
    uint8_t raw[LONGEST_CONTENT];
    Py_ssize_t len = 0;
    uint8_t check = 0;
    for (Py_ssize_t i = 1; i < n - 1; i++) {
        uint8_t b = wire[i];
        if (b == ESCAPE) {
            if (i + 1 >= n - 1 || (wire[i + 1] != 0x01 && wire[i + 1] != 0x02)) Py_RETURN_NONE;
            b = wire[++i] == 0x02 ? FLAG : ESCAPE;
        }
        raw[len++] = b;
        check ^= b;
    }
    if (len < 13) Py_RETURN_NONE;
    Py_ssize_t content = len - 1;
    check ^= raw[content]; /* the XOR of the content alone */
    if (check != raw[content]) Py_RETURN_NONE;
    uint32_t props = u16(raw + 2);
    Py_ssize_t body_length = props & 0x03FF;
    /* bit 14 marks a 2019 header, but some terminals set it on a 2013-sized header: trust the arithmetic. */
    int layouts[2] = {(props & 0x4000) ? 1 : 0, 0};
    int tries = (props & 0x4000) ? 2 : 1;
    for (int t = 0; t < tries; t++) {
        Py_ssize_t size;
        PyObject *header = header_of(st, raw, content, layouts[t], &size);
        if (header == NULL) {
            if (PyErr_Occurred()) return NULL;
            continue;
        }
        if (size + body_length == content && ((props >> 10) & 0x07) == 0) {
            PyObject *items[2] = {header, PyBytes_FromStringAndSize((const char *)raw + size, body_length)};
            if (items[1] == NULL) {
                Py_DECREF(header);
                return NULL;
            }
            return named_tuple(st->frame_type, items, 2);
        }
        Py_DECREF(header);
    }
    Py_RETURN_NONE;
}

/* Appends `b` escaped (0x7E and 0x7D as two bytes each) at `out`; returns the new end. */
static uint8_t *put_escaped(uint8_t *out, uint8_t b) {
    if (b == FLAG || b == ESCAPE) {
        *out++ = ESCAPE;
        *out++ = b == FLAG ? 0x02 : 0x01;
    } else {
        *out++ = b;
    }
    return out;
}

PyDoc_STRVAR(general_response_doc,
             "general_response(to: Header, serial: int, result: int) -> bytes | None\n\n"
             "The platform's general response (0x8001) to the frame with header `to`, as\n"
             "shared.jt808.reference_general_response_frame writes it; None when the Python path must say what is\n"
             "wrong (a number that is not digits or too long for its layout).");

static PyObject *general_response(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    State *st = state_of(module);
    if (bind_types(st) < 0) return NULL;
    if (nargs != 3 || !PyObject_TypeCheck(args[0], (PyTypeObject *)st->header_type) || PyTuple_GET_SIZE(args[0]) < 8 ||
        !PyLong_Check(args[1]) || !PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "general_response takes (Header, int, int)");
        return NULL;
    }
    PyObject *to = args[0];
    PyObject *version = PyTuple_GET_ITEM(to, 5), *phone = PyTuple_GET_ITEM(to, 6);
    long message_id = PyLong_AsLong(PyTuple_GET_ITEM(to, 0)), answered = PyLong_AsLong(PyTuple_GET_ITEM(to, 7));
    long serial = PyLong_AsLong(args[1]), result = PyLong_AsLong(args[2]);
    long protocol = version == Py_None ? 0 : PyLong_AsLong(version);
    if (PyErr_Occurred()) return NULL;
    if (!PyUnicode_Check(phone) || !PyUnicode_IS_ASCII(phone) || result < 0 || result > 255) Py_RETURN_NONE;
    if (protocol < 0 || protocol > 255 || message_id < 0 || message_id > 0xFFFF || answered < 0 || answered > 0xFFFF)
        Py_RETURN_NONE;
    int wide = version != Py_None;
    Py_ssize_t digits = PyUnicode_GET_LENGTH(phone), phone_len = wide ? 10 : 6;
    const char *text = (const char *)PyUnicode_DATA(phone);
    if (digits == 0 || digits > 2 * phone_len) Py_RETURN_NONE;
    for (Py_ssize_t i = 0; i < digits; i++)
        if (text[i] < '0' || text[i] > '9') Py_RETURN_NONE;
    /* The content: id, properties, [version], the number in BCD padded with zeros on the left, serial, body. */
    uint8_t content[2 + 2 + 1 + 10 + 2 + 5], *at = content;
    uint32_t props = 5 | (wide ? 0x4000 : 0);
    *at++ = 0x80, *at++ = 0x01, *at++ = (uint8_t)(props >> 8), *at++ = (uint8_t)props;
    if (wide) *at++ = (uint8_t)protocol;
    char padded[20];
    memset(padded, '0', (size_t)(2 * phone_len - digits));
    memcpy(padded + 2 * phone_len - digits, text, (size_t)digits);
    for (Py_ssize_t i = 0; i < phone_len; i++) *at++ = (uint8_t)(((padded[2 * i] - '0') << 4) | (padded[2 * i + 1] - '0'));
    serial &= 0xFFFF;
    *at++ = (uint8_t)(serial >> 8), *at++ = (uint8_t)serial;
    *at++ = (uint8_t)(answered >> 8), *at++ = (uint8_t)answered;
    *at++ = (uint8_t)(message_id >> 8), *at++ = (uint8_t)message_id;
    *at++ = (uint8_t)result;
    uint8_t wire[2 * (sizeof content + 1) + 2], *out = wire, check = 0;
    *out++ = FLAG;
    for (uint8_t *p = content; p < at; p++) {
        check ^= *p;
        out = put_escaped(out, *p);
    }
    out = put_escaped(out, check);
    *out++ = FLAG;
    return PyBytes_FromStringAndSize((const char *)wire, out - wire);
}

static int bcd_pair(uint8_t b, int *out) {
    uint8_t hi = b >> 4, lo = b & 0x0F;
    if (hi > 9 || lo > 9) return 0;
    *out = hi * 10 + lo;
    return 1;
}

/* The BCD local time in UTC as year, month, day, hour, minute, second, and as seconds since the epoch; 0 for no
 * time or not a time. */
static int utc_fields(const uint8_t *bcd, long offset_min, int out[6], int64_t *epoch_s) {
    int f[6];
    for (int i = 0; i < 6; i++)
        if (!bcd_pair(bcd[i], &f[i])) return 0;
    int year = 2000 + f[0], month = f[1], day = f[2], hour = f[3], minute = f[4], second = f[5];
    if (!is_date(year, month, day) || hour > 23 || minute > 59 || second > 59) return 0;
    int64_t seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
    seconds -= (int64_t)offset_min * 60;
    *epoch_s = seconds;
    int64_t days = seconds >= 0 ? seconds / 86400 : -((-seconds + 86399) / 86400);
    int64_t rest = seconds - days * 86400;
    civil_from_days(days, &out[0], &out[1], &out[2]);
    out[3] = (int)(rest / 3600);
    out[4] = (int)(rest / 60 % 60);
    out[5] = (int)(rest % 60);
    return 1;
}

/* What a plain 0x0200 body says, in the units the record publishes: coordinates in signed microdegrees (the record's
 * degrees are these over a million), speed in tenths of km/h. */
typedef struct {
    int64_t lat_micro, lon_micro, epoch_s;
    long altitude;
    uint32_t speed_tenths, course, status;
    int satellites; /* -1: no 0x31 item */
    int utc[6];
} Reading;

/* 1 when the body makes exactly one position ping and no video pings within the contract's ranges (what
 * `position_record` documents); 0 for any other body, which the Python path decodes, or says what is wrong with. */
static int read_location(const uint8_t *body, Py_ssize_t end, long offset_min, Reading *out) {
    if (end < 28) return 0;
    uint32_t status = u32(body + 4), lat_raw = u32(body + 8), lon_raw = u32(body + 12);
    long altitude = (long)u16(body + 16);
    if (altitude > 0x7FFF) altitude -= 0x10000; /* the standard says unsigned; below sea level is two's complement */
    int satellites = -1;                        /* the last 0x31 item wins, as in the decoded extras dict */
    for (Py_ssize_t at = 28; at < end;) {
        if (at + 2 > end) return 0;
        uint8_t item = body[at], length = body[at + 1];
        if (at + 2 + length > end) return 0;
        if (item == 0x15 || item == 0x16) return 0; /* video alarms: the Python path adds video pings */
        if (item == 0x31) satellites = length ? body[at + 2] : -1;
        at += 2 + length;
    }
    /* negated as integers, as the reference does: a south latitude of 0 is 0.0, not -0.0 */
    out->lat_micro = (status & SOUTH) ? -(int64_t)lat_raw : (int64_t)lat_raw;
    out->lon_micro = (status & WEST) ? -(int64_t)lon_raw : (int64_t)lon_raw;
    out->speed_tenths = u16(body + 18);
    out->course = u16(body + 20);
    if (out->lat_micro > 90000000 || out->lat_micro < -90000000) return 0;
    /* Outside the contract's ranges: the Python path makes the ping, and the intake refuses it saying why. */
    if (out->lon_micro > 180000000 || out->lon_micro < -180000000 || out->speed_tenths > 4000) return 0;
    static const uint8_t no_time[6] = {0};
    if (memcmp(body + 22, no_time, 6) == 0) return 0;
    if (!utc_fields(body + 22, offset_min, out->utc, &out->epoch_s)) return 0;
    out->altitude = altitude;
    out->satellites = satellites;
    out->status = status;
    return 1;
}

/* The GNSS the status bits name, as `gnss_of` in pings.py; -1 for none. */
static int gnss_index(uint32_t status) {
    int gps = (status & GPS_USED) != 0, bds = (status & BEIDOU_USED) != 0;
    return gps && bds ? G_BDS_GPS
           : bds      ? G_BDS
           : gps      ? G_GPS
           : (status & GLONASS_USED) ? G_GLONASS
           : (status & GALILEO_USED) ? G_GALILEO
                                     : -1;
}

static int put(PyObject *dict, PyObject *key, PyObject *value) {
    if (value == NULL) return -1;
    int rc = PyDict_SetItem(dict, key, value);
    Py_DECREF(value);
    return rc;
}

PyDoc_STRVAR(position_record_doc,
             "position_record(body: bytes, unit_id: str, utc_offset_min: int) -> dict | None\n\n"
             "The kuaijing.positions record's fields from `v` to `fix` for a 0x0200 body that makes one position ping\n"
             "and no video pings, within the contract's ranges: what accept_ping(position_ping(decode_location(body)))\n"
             "publishes, `ts` an aware UTC datetime. None for any other body (the Python path decodes it, or says\n"
             "what is wrong, and the intake validates what it makes).");

static PyObject *position_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    State *st = state_of(module);
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyUnicode_Check(args[1]) || !PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "position_record takes (bytes, str, int)");
        return NULL;
    }
    long offset_min = PyLong_AsLong(args[2]);
    if (offset_min == -1 && PyErr_Occurred()) return NULL;
    Reading r;
    if (!read_location((const uint8_t *)PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), offset_min, &r))
        Py_RETURN_NONE;
    PyObject *record = _PyDict_NewPresized(RECORD_KEYS);
    if (record == NULL) return NULL;
    RecordNames *n = &st->names;
    PyObject **k = n->keys;
    int gnss = gnss_index(r.status);
    PyObject *ts = PyDateTimeAPI->DateTime_FromDateAndTime(r.utc[0], r.utc[1], r.utc[2], r.utc[3], r.utc[4], r.utc[5], 0,
                                                           PyDateTime_TimeZone_UTC, PyDateTimeAPI->DateTimeType);
    if (put(record, k[K_V], Py_NewRef(n->one)) < 0 || put(record, k[K_KIND], Py_NewRef(n->position)) < 0 ||
        put(record, k[K_UNIT_ID], Py_NewRef(args[1])) < 0 || put(record, k[K_TS], ts) < 0 ||
        put(record, k[K_LAT], PyFloat_FromDouble((double)r.lat_micro / 1e6)) < 0 ||
        put(record, k[K_LON], PyFloat_FromDouble((double)r.lon_micro / 1e6)) < 0 ||
        put(record, k[K_SPEED], PyFloat_FromDouble((double)r.speed_tenths / 10)) < 0 ||
        put(record, k[K_HEADING], r.course < 360 ? PyFloat_FromDouble((double)r.course) : Py_NewRef(Py_None)) < 0 ||
        put(record, k[K_ALTITUDE], PyFloat_FromDouble((double)r.altitude)) < 0 ||
        put(record, k[K_GNSS], Py_NewRef(gnss >= 0 ? n->gnss[gnss] : Py_None)) < 0 ||
        put(record, k[K_SATELLITES], r.satellites >= 0 ? PyLong_FromLong(r.satellites) : Py_NewRef(Py_None)) < 0 ||
        put(record, k[K_HDOP], Py_NewRef(Py_None)) < 0 || put(record, k[K_SEQ], Py_NewRef(Py_None)) < 0 ||
        put(record, k[K_CRS], Py_NewRef(n->wgs84)) < 0 ||
        put(record, k[K_FIX], Py_NewRef((r.status & POSITIONED) ? Py_True : Py_False)) < 0) {
        Py_DECREF(record);
        return NULL;
    }
    return record;
}

/* A value the record holds as a float with `scale` units to the degree (or km/h), written as repr and orjson write
 * that float: an exact quotient of small integers has the shortest round-trip form of its decimal digits, with at
 * least one digit after the point. Values under 1e-4 in magnitude are written with an exponent, differently by the
 * two: 0 is returned for them, and the caller declines. */
static int put_decimal(char **out, int64_t value, int64_t scale, int decimals) {
    int64_t magnitude = value < 0 ? -value : value;
    if (magnitude != 0 && magnitude * 10000 < scale) return 0;
    char digits[24];
    int64_t fraction = magnitude % scale;
    int n = 0;
    if (value < 0) (*out)[n++] = '-';
    n += sprintf(*out + n, "%lld.", (long long)(magnitude / scale));
    sprintf(digits, "%0*lld", decimals, (long long)fraction);
    int keep = decimals;
    while (keep > 1 && digits[keep - 1] == '0') keep--;
    memcpy(*out + n, digits, (size_t)keep);
    *out += n + keep;
    return 1;
}

static void put_text(char **out, const char *text, size_t length) {
    memcpy(*out, text, length);
    *out += length;
}
#define PUT_LITERAL(out, literal) put_text(out, literal, sizeof(literal) - 1)

PyDoc_STRVAR(position_value_doc,
             "position_value(body: bytes, unit_json: bytes, platform_json: bytes, tail: bytes, utc_offset_min: int,\n"
             "               latest_us: int, resolution: int) -> bytes | None\n\n"
             "The kuaijing.positions value for the body `position_record` takes, as the intake publishes it:\n"
             "`unit_json` and `platform_json` are the unit's and platform's ids as JSON strings, `tail` the record's\n"
             "end after its h3 field (its source and received_at, then the closing brace), and the cell is H3's at\n"
             "`resolution`. None for a body `position_record` declines, a report time after `latest_us` (microseconds\n"
             "since the epoch), or a coordinate under 1e-4 degrees in magnitude (written with an exponent).");

static PyObject *position_value(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    State *st = state_of(module);
    if (nargs != 7 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1]) || !PyBytes_Check(args[2]) ||
        !PyBytes_Check(args[3]) || !PyLong_Check(args[4]) || !PyLong_Check(args[5]) || !PyLong_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError, "position_value takes (bytes, bytes, bytes, bytes, int, int, int)");
        return NULL;
    }
    long offset_min = PyLong_AsLong(args[4]), resolution = PyLong_AsLong(args[6]);
    long long latest_us = PyLong_AsLongLong(args[5]);
    if (PyErr_Occurred()) return NULL;
    Reading r;
    if (!read_location((const uint8_t *)PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), offset_min, &r))
        Py_RETURN_NONE;
    if (r.epoch_s * 1000000 > latest_us) Py_RETURN_NONE; /* ahead of the clock: the Python path says by how much */
    double lat = (double)r.lat_micro / 1e6, lon = (double)r.lon_micro / 1e6;
    uint64_t cell = st->latlng_to_cell(lat, lon, (int)resolution, 0);
    if (cell == 1 && PyErr_Occurred()) return NULL;
    Py_ssize_t unit_len = PyBytes_GET_SIZE(args[1]), platform_len = PyBytes_GET_SIZE(args[2]);
    Py_ssize_t tail_len = PyBytes_GET_SIZE(args[3]);
    PyObject *value = PyBytes_FromStringAndSize(NULL, 400 + unit_len + platform_len + tail_len);
    if (value == NULL) return NULL;
    char *start = PyBytes_AS_STRING(value), *out = start;
    PUT_LITERAL(&out, "{\"v\":1,\"kind\":\"position\",\"unit_id\":");
    put_text(&out, PyBytes_AS_STRING(args[1]), (size_t)unit_len);
    out += sprintf(out, ",\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02dZ\",\"lat\":", r.utc[0], r.utc[1], r.utc[2], r.utc[3],
                   r.utc[4], r.utc[5]);
    int written = put_decimal(&out, r.lat_micro, 1000000, 6);
    PUT_LITERAL(&out, ",\"lon\":");
    written = written && put_decimal(&out, r.lon_micro, 1000000, 6);
    if (!written) {
        Py_DECREF(value);
        Py_RETURN_NONE;
    }
    PUT_LITERAL(&out, ",\"speed_kmh\":");
    put_decimal(&out, r.speed_tenths, 10, 1);
    if (r.course < 360)
        out += sprintf(out, ",\"heading_deg\":%u.0", r.course);
    else
        PUT_LITERAL(&out, ",\"heading_deg\":null");
    out += sprintf(out, ",\"altitude_m\":%ld.0", r.altitude);
    int gnss = gnss_index(r.status);
    if (gnss >= 0)
        out += sprintf(out, ",\"gnss\":\"%s\"", GNSS_NAMES[gnss]);
    else
        PUT_LITERAL(&out, ",\"gnss\":null");
    if (r.satellites >= 0)
        out += sprintf(out, ",\"satellites\":%d", r.satellites);
    else
        PUT_LITERAL(&out, ",\"satellites\":null");
    PUT_LITERAL(&out, ",\"hdop\":null,\"seq\":null,\"crs\":\"WGS84\",\"fix\":");
    if (r.status & POSITIONED)
        PUT_LITERAL(&out, "true");
    else
        PUT_LITERAL(&out, "false");
    PUT_LITERAL(&out, ",\"platform_id\":");
    put_text(&out, PyBytes_AS_STRING(args[2]), (size_t)platform_len);
    out += sprintf(out, ",\"h3\":\"%llx\"", (unsigned long long)cell);
    put_text(&out, PyBytes_AS_STRING(args[3]), (size_t)tail_len);
    if (_PyBytes_Resize(&value, out - start) < 0) return NULL;
    return value;
}

static PyMethodDef methods[] = {
    {"parse_frame", (PyCFunction)parse_frame, METH_O, parse_frame_doc},
    {"position_record", (PyCFunction)(void (*)(void))position_record, METH_FASTCALL, position_record_doc},
    {"general_response", (PyCFunction)(void (*)(void))general_response, METH_FASTCALL, general_response_doc},
    {"position_value", (PyCFunction)(void (*)(void))position_value, METH_FASTCALL, position_value_doc},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *module) {
    State *st = state_of(module);
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return -1;
    if (record_names_init(&st->names) < 0) return -1;
    st->latlng_to_cell = import_latlng_to_cell();
    return st->latlng_to_cell == NULL ? -1 : 0;
}

static int traverse(PyObject *module, visitproc visit, void *arg) {
    State *st = state_of(module);
    Py_VISIT(st->header_type);
    Py_VISIT(st->frame_type);
    return 0;
}

static int clear(PyObject *module) {
    State *st = state_of(module);
    Py_CLEAR(st->header_type);
    Py_CLEAR(st->frame_type);
    record_names_clear(&st->names);
    return 0;
}

static void free_module(void *module) { clear((PyObject *)module); }

static PyModuleDef_Slot slots[] = {{Py_mod_exec, exec_module}, {0, NULL}};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT,
    .m_name = "shared.jt808._decoder",
    .m_doc = "The JT/T 808 hot path in C; the Python modules beside it are the reference and say what is wrong.",
    .m_size = sizeof(State),
    .m_methods = methods,
    .m_slots = slots,
    .m_traverse = traverse,
    .m_clear = clear,
    .m_free = free_module,
};

PyMODINIT_FUNC PyInit__decoder(void) { return PyModuleDef_Init(&definition); }
