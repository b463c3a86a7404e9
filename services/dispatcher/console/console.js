// The command-centre console: the live map of every unit, open calls against their zone's target, a call board and
// per-platform counters, fed by the dispatcher's REST API and its Server-Sent Events (read with fetch, so the token
// travels in a header, never in a URL). Plain browser JavaScript, no build step; MapLibre GL JS draws the map from
// the dispatcher's own data (zones, platforms, the city file's streets): no tile server, CDN or remote font. What
// moves (units, tracks, calls, the selection) is drawn on canvases over the map: moving-layer.js says why.
"use strict";

(() => {
  const TEXT = {
    zh: {
      title: "快警指挥台", token: "令牌", sign_in: "登录", sign_out: "退出", other_language: "English",
      bad_token: "令牌无效或已过期", calls: "警情", call: "警情", zone: "区域", unit: "警力", time_left: "剩余",
      platforms: "平台", platform: "平台", available: "空闲", busy: "出警", offline: "离线",
      command_car: "指挥车", patrol_car: "巡逻车", motorcycle: "摩托车", live_feed: "实时", offline_feed: "断开",
      viewer: "只读", dispatcher: "调度员", admin: "管理员",
      key_area: "重点区域 1分钟", central_urban: "中心城区 3分钟", other_urban: "其他城区 5分钟", rural: "农村 15分钟",
      new_call: "新建警情", lat: "纬度", lon: "经度", address: "地址", category: "类别", priority: "优先级",
      create: "创建", cancel: "取消", recommended: "推荐警力", distance: "距离", eta: "预计", assign: "派遣",
      status: "状态", received: "接警", target: "时限", set_status: "设置状态", last_fix: "最后定位",
      speed: "速度", kind: "类型", no_units: "附近没有空闲警力", overdue: "超时", close: "关闭", close_call: "结束警情",
      dispatched: "已派遣", en_route: "途中", on_scene: "到场", off_duty: "下班", open: "处置中",
      assigned: "已派遣", created: "接警", closed: "结束", pick_address: "选择地址…", timeline: "经过",
      theft: "盗窃", "traffic accident": "交通事故", dispute: "纠纷", assault: "殴打", noise: "噪音",
      "missing person": "走失", fraud: "诈骗", fire: "火情", sent: "已派遣",
      coverage: "承诺覆盖", covered: "可及面积",
    },
    en: {
      title: "Kuaijing console", token: "Token", sign_in: "Sign in", sign_out: "Sign out", other_language: "中文",
      bad_token: "Unknown or expired token", calls: "Calls", call: "Call", zone: "Zone", unit: "Unit",
      time_left: "Left", platforms: "Platforms", platform: "Platform", available: "Free", busy: "Busy",
      offline: "Offline", command_car: "Command car", patrol_car: "Patrol car", motorcycle: "Motorcycle",
      live_feed: "Live", offline_feed: "Disconnected", viewer: "Viewer", dispatcher: "Dispatcher", admin: "Admin",
      key_area: "Key area 1 min", central_urban: "Central 3 min", other_urban: "Urban 5 min", rural: "Rural 15 min",
      new_call: "New call", lat: "Lat", lon: "Lon", address: "Address", category: "Category", priority: "Priority",
      create: "Create", cancel: "Cancel", recommended: "Recommended units", distance: "Distance", eta: "ETA",
      assign: "Assign", status: "Status", received: "Received", target: "Target", set_status: "Set status",
      last_fix: "Last fix", speed: "Speed", kind: "Kind", no_units: "No free unit nearby", overdue: "overdue",
      close: "Close", close_call: "Close call", dispatched: "Dispatched", en_route: "En route", on_scene: "On scene",
      off_duty: "Off duty",
      open: "Open", assigned: "Assigned", created: "Received", closed: "Closed", pick_address: "Pick an address…",
      timeline: "Timeline", theft: "Theft", "traffic accident": "Traffic accident", dispute: "Dispute",
      assault: "Assault", noise: "Noise", "missing person": "Missing person", fraud: "Fraud", fire: "Fire",
      sent: "Sent",
      coverage: "Coverage of the promise", covered: "Area reached",
    },
  };
  const CATEGORIES = ["theft", "traffic accident", "dispute", "assault", "noise", "missing person", "fraud", "fire"];
  const KIND_COLOUR = { command_car: "#1e6bff", patrol_car: "#e53935", motorcycle: "#fdd835" };
  const OFFLINE_COLOUR = "#7a7f87";
  const ZONE_COLOUR = { key_area: "#ff1744", central_urban: "#ff9100", other_urban: "#ffd740", rural: "#69f0ae" };
  const CALL_COLOUR = { waiting: "#ffab00", overdue: "#ff1744" };
  const TRACK_POINTS = 12;
  const UNITS_EVERY_MS = 1000;
  // Units report at most once a second on the feed: the map follows them at that pace (a redraw of thousands of
  // units is the page's heaviest work), and at once for what a dispatcher did (a selection, a status, a call).
  const TRACKS_EVERY_MS = 3000;
  const STALE_CHECK_TICKS = 5;
  const COVERAGE_EVERY_TICKS = 10;
  const FRAMES_KEPT = 600;

  const state = {
    token: sessionStorage.getItem("kuaijing.token"),
    lang: localStorage.getItem("kuaijing.lang") || "zh",
    session: null,
    units: new Map(),
    calls: new Map(),
    platforms: new Map(),
    places: [],
    newest: { ts: 0, heardAt: 0 },
    selected: null,
    dirty: { units: true, calls: true, now: true },
    lastDraw: 0,
    lastTracks: 0,
    overdue: "",
    ticks: 0,
    map: null,
    moving: null,
    feed: null,
  };
  // Read by the tests and the console benchmark: frame times, what is drawn, whether the feed is up.
  const probe = {
    frames: [], unitsDrawn: 0, callsDrawn: 0, live: false, events: 0, drawn: {}, mapRenders: 0,
    repaintEveryFrame: false, // the console benchmark's anchor: what one full repaint costs on this machine
    // Where a place is on the page, and a view of it: what a test clicks.
    pointOf(lon, lat) {
      const box = state.map.getContainer().getBoundingClientRect();
      const { x, y } = state.map.project([lon, lat]);
      return { x: box.left + x, y: box.top + y };
    },
    jumpTo(lon, lat, zoom) { state.map.jumpTo({ center: [lon, lat], zoom }); },
  };
  window.kuaijing = probe;

  const $ = (selector) => document.querySelector(selector);
  const t = (key) => TEXT[state.lang][key] ?? key;
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "onclick") node.addEventListener("click", v);
      else if (k === "className") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child instanceof Node ? child : String(child));
    return node;
  };

  class ApiError extends Error {
    constructor(status, body) {
      super(body?.detail?.error || body?.error || `HTTP ${status}`);
      this.status = status;
    }
  }

  async function api(path, options = {}) {
    const response = await fetch(path, {
      ...options,
      headers: { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json" },
    });
    const body = await response.json().catch(() => null);
    if (response.status === 401) {
      signOut(t("bad_token"));
      throw new ApiError(401, body);
    }
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  // The dispatcher's "now": the wall clock, or in event time (a replay, the demo) the newest fix heard, carried
  // forward by the time since it was heard.
  function now() {
    if (state.session?.clock !== "event") return Date.now() + (state.session?.skewMs || 0);
    return state.newest.ts + (performance.now() - state.newest.heardAt);
  }

  function heard(ts) {
    const ms = Date.parse(ts);
    if (ms > state.newest.ts) state.newest = { ts: ms, heardAt: performance.now() };
  }

  function online(unit) {
    return unit.ts !== null && now() - unit.ts <= state.session.max_position_age_s * 1000;
  }

  function applyLanguage() {
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    document.title = t("title");
    for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
    if (state.session) $("#role").textContent = t(state.session.role);
    renderPanels();
    renderCoverage();
    if (state.selected) showSelected();
  }

  // login

  async function signIn(token) {
    state.token = token;
    const session = await api("/v1/session");
    session.skewMs = Date.parse(session.now) - Date.now();
    state.session = session;
    sessionStorage.setItem("kuaijing.token", token);
    $("#login").hidden = true;
    document.body.classList.toggle("viewer", session.role === "viewer");
    $("#role").textContent = t(session.role);
    await startMap();
    follow();
  }

  function signOut(message = "") {
    sessionStorage.removeItem("kuaijing.token");
    state.token = null;
    state.feed?.abort();
    $("#login").hidden = false;
    $("#login-error").textContent = message;
  }

  // the map

  async function startMap() {
    const [zones, platforms, units, calls, base] = await Promise.all([
      api("/v1/zones"), api("/v1/platforms"), api("/v1/units"), api("/v1/calls?status=open&limit=5000"),
      api("/v1/map"),
    ]);
    for (const p of platforms) state.platforms.set(p.id, p);
    state.places = base.places;
    $("#city").textContent = base.name || "";
    loadUnits(units);
    loadCalls(calls);
    const lons = platforms.map((p) => p.lon), lats = platforms.map((p) => p.lat);
    const map = new maplibregl.Map({
      container: "map",
      style: { version: 8, sources: {}, layers: [{ id: "ground", type: "background", paint: { "background-color": "#0b1622" } }] },
      bounds: lons.length ? [[Math.min(...lons) - 0.02, Math.min(...lats) - 0.02], [Math.max(...lons) + 0.02, Math.max(...lats) + 0.02]] : undefined,
      center: lons.length ? undefined : [111.4672, 27.2418],
      zoom: lons.length ? undefined : 11,
      attributionControl: false,
      fadeDuration: 0,
    });
    state.map = map;
    await new Promise((resolve) => map.on("load", resolve));
    const zoneFeatures = zones.map((z) => ({ type: "Feature", properties: { id: z.id, class: z.class }, geometry: z.geometry }));
    zoneFeatures.sort((a, b) => zoneRank(a.properties.class) - zoneRank(b.properties.class));
    map.addSource("zones", { type: "geojson", data: { type: "FeatureCollection", features: zoneFeatures } });
    map.addSource("streets", { type: "geojson", data: base.streets });
    map.addSource("platforms", {
      type: "geojson",
      data: { type: "FeatureCollection", features: platforms.map((p) => point(p.lon, p.lat, { id: p.id })) },
    });
    const zoneColour = ["match", ["get", "class"], ...Object.entries(ZONE_COLOUR).flat(), "#888888"];
    map.addLayer({ id: "zones-fill", type: "fill", source: "zones", paint: { "fill-color": zoneColour, "fill-opacity": 0.1 } });
    map.addLayer({ id: "zones-line", type: "line", source: "zones", paint: { "line-color": zoneColour, "line-width": 1.2, "line-opacity": 0.7 } });
    map.addLayer({
      id: "streets", type: "line", source: "streets",
      paint: { "line-color": "#2e4c68", "line-width": ["match", ["get", "class"], "arterial", 2.4, "rural", 1.8, 0.9] },
    });
    map.addLayer({ id: "platforms", type: "circle", source: "platforms", paint: { "circle-radius": 5, "circle-color": "#0b1622", "circle-stroke-color": "#4fc3f7", "circle-stroke-width": 2 } });
    // Units, their tracks, calls and the selection move: they are drawn over the map, not in it (moving-layer.js).
    state.moving = new window.KuaijingMovingLayer(map);
    map.on("render", () => { probe.mapRenders += 1; });
    map.on("click", onMapClick);
    map.on("mousemove", (event) => { map.getCanvas().style.cursor = state.moving.hit(event.point) ? "pointer" : ""; });
    requestAnimationFrame(frame);
    setInterval(tick, 1000);
  }

  function zoneRank(zoneClass) {
    return { rural: 0, other_urban: 1, central_urban: 2, key_area: 3 }[zoneClass] ?? 0;
  }

  const point = (lon, lat, properties) => ({ type: "Feature", properties, geometry: { type: "Point", coordinates: [lon, lat] } });

  function loadUnits(units) {
    for (const u of units) {
      const known = state.units.get(u.id);
      const ts = u.position ? Date.parse(u.position.ts) : null;
      if (u.position) heard(u.position.ts);
      state.units.set(u.id, {
        id: u.id, platform_id: u.platform_id, kind: u.kind, callsign: u.callsign, status: u.status,
        call_id: u.call_id, ts, lat: u.position?.lat, lon: u.position?.lon, heading: u.position?.heading_deg || 0,
        speed: u.position?.speed_kmh, track: known?.track || (u.position ? [[u.position.lon, u.position.lat]] : []),
      });
    }
    state.dirty.units = state.dirty.now = true;
  }

  function loadCalls(calls) {
    state.calls.clear();
    for (const c of calls) {
      const arrived = c.timeline.find((e) => e.event === "on_scene");
      state.calls.set(c.call_id, {
        call_id: c.call_id, lat: c.lat, lon: c.lon, zone_class: c.zone_class, target_s: c.target_s,
        received_at: Date.parse(c.received_at), category: c.category, priority: c.priority, address: c.address,
        units: [...c.assigned_unit_ids], arrived_at: arrived ? Date.parse(arrived.ts) : null,
        timeline: c.timeline.map((e) => ({ event: e.event, ts: e.ts, unit_id: e.unit_id })),
      });
    }
    state.dirty.calls = state.dirty.now = true;
  }

  function unitMarks() {
    const units = [];
    probe.drawn = {};
    for (const u of state.units.values()) {
      if (u.lat === undefined) continue;
      const live = online(u);
      const mark = {
        id: u.id, lon: u.lon, lat: u.lat, colour: live ? KIND_COLOUR[u.kind] || "#ffffff" : OFFLINE_COLOUR,
        online: live, heading: u.heading, busy: live && u.status !== "available",
        selected: state.selected?.type === "unit" && state.selected.id === u.id,
      };
      units.push(mark);
      probe.drawn[u.id] = mark;
    }
    return units;
  }

  function trackLines() {
    const tracks = [];
    for (const u of state.units.values()) {
      if (u.track.length < 2) continue;
      tracks.push({ colour: online(u) ? KIND_COLOUR[u.kind] || "#ffffff" : OFFLINE_COLOUR, coordinates: u.track });
    }
    return tracks;
  }

  function callMarks() {
    const at = now();
    return [...state.calls.values()].map((c) => ({
      id: c.call_id, lon: c.lon, lat: c.lat, colour: overdue(c, at) ? CALL_COLOUR.overdue : CALL_COLOUR.waiting,
    }));
  }

  // A call is overdue when no unit is on scene and its zone's target has passed.
  function overdue(call, at) {
    return call.arrived_at === null && at - call.received_at > call.target_s * 1000;
  }

  function frame(time) {
    probe.frames.push(time);
    if (probe.frames.length > FRAMES_KEPT) probe.frames.shift();
    const moving = state.moving;
    const due = state.dirty.now || time - state.lastDraw >= UNITS_EVERY_MS;
    if (moving && due && (state.dirty.units || state.dirty.calls)) {
      state.lastDraw = time;
      if (state.dirty.units) {
        const units = unitMarks();
        moving.setUnits(units);
        probe.unitsDrawn = units.length;
        if (time - state.lastTracks >= TRACKS_EVERY_MS) {
          state.lastTracks = time;
          moving.setTracks(trackLines());
          moving.drawTracks();
        }
      }
      if (state.dirty.calls) {
        const calls = callMarks();
        moving.setCalls(calls);
        probe.callsDrawn = calls.length;
      }
      moving.drawMarks();
      state.dirty.units = state.dirty.calls = state.dirty.now = false;
    }
    if (probe.repaintEveryFrame && moving) {
      state.map.triggerRepaint();
      moving.drawTracks();
      moving.drawMarks();
    }
    requestAnimationFrame(frame);
  }

  // Once a second: the clock, countdowns and counters; calls turning overdue, and now and then units going stale
  // without an event (the map is redrawn only for what changed).
  function tick() {
    const at = now();
    $("#clock").textContent = new Date(at).toLocaleString(state.lang === "zh" ? "zh-CN" : "en-GB", { hour12: false });
    const overdueNow = [...state.calls.values()].filter((c) => overdue(c, at)).map((c) => c.call_id).join();
    if (overdueNow !== state.overdue) {
      state.overdue = overdueNow;
      state.dirty.calls = true;
    }
    state.ticks += 1;
    if (state.ticks % STALE_CHECK_TICKS === 0) state.dirty.units = true;
    if (state.ticks % COVERAGE_EVERY_TICKS === 1) loadCoverage();
    renderPanels();
    if (state.selected?.type === "call") updateCountdown();
  }

  // the live feed

  async function follow() {
    let backoff = 500;
    while (state.token) {
      const controller = new AbortController();
      state.feed = controller;
      try {
        const response = await fetch("/v1/events", { headers: { Authorization: `Bearer ${state.token}` }, signal: controller.signal });
        if (response.status === 401) { signOut(t("bad_token")); return; }
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        // What happened while the feed was down: read again once it is up (events meanwhile are applied on top).
        const [units, calls] = await Promise.all([api("/v1/units"), api("/v1/calls?status=open&limit=5000")]);
        loadUnits(units);
        loadCalls(calls);
        setLink(true);
        backoff = 500;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            handle(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      } catch (error) {
        if (controller.signal.aborted && !state.token) return;
      }
      setLink(false);
      await new Promise((resolve) => setTimeout(resolve, backoff));
      backoff = Math.min(backoff * 2, 10000);
    }
  }

  function setLink(up) {
    probe.live = up;
    const link = $("#link");
    link.classList.toggle("up", up);
    link.classList.toggle("down", !up);
    link.dataset.t = up ? "live_feed" : "offline_feed";
    link.textContent = t(link.dataset.t);
  }

  function handle(block) {
    let kind = "message", data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) kind = line.slice(6).trim();
      else if (line.startsWith("data:")) data += line.slice(5).trim();
    }
    if (!data) return;
    probe.events += 1;
    const message = JSON.parse(data);
    if (kind === "position") onPosition(message);
    else if (kind === "status") onStatus(message);
    else if (kind === "call") onCall(message);
  }

  function onPosition(p) {
    const unit = state.units.get(p.unit_id);
    heard(p.ts);
    if (!unit) return;
    const ts = Date.parse(p.ts);
    if (unit.ts !== null && ts < unit.ts) return;
    Object.assign(unit, { ts, lat: p.lat, lon: p.lon, heading: p.heading_deg ?? unit.heading, speed: p.speed_kmh });
    unit.track.push([p.lon, p.lat]);
    if (unit.track.length > TRACK_POINTS) unit.track.shift();
    state.dirty.units = true;
  }

  function onStatus(s) {
    const unit = state.units.get(s.unit_id);
    if (!unit) return;
    unit.status = s.status;
    unit.call_id = s.call_id;
    state.dirty.units = state.dirty.now = true;
    if (state.selected?.type === "unit" && state.selected.id === s.unit_id) showSelected();
  }

  function onCall(e) {
    let call = state.calls.get(e.call_id);
    if (e.event === "closed") {
      state.calls.delete(e.call_id);
    } else {
      if (!call) {
        call = {
          call_id: e.call_id, lat: e.lat, lon: e.lon, zone_class: e.zone_class, target_s: e.target_s,
          received_at: Date.parse(e.ts), category: e.category, priority: e.priority, address: null, units: [],
          arrived_at: null, timeline: [],
        };
        state.calls.set(e.call_id, call);
      }
      if (!call.timeline.some((x) => x.event === e.event && x.ts === e.ts && x.unit_id === e.unit_id)) {
        call.timeline.push({ event: e.event, ts: e.ts, unit_id: e.unit_id });
      }
      if (e.event === "assigned" && e.unit_id && !call.units.includes(e.unit_id)) call.units.push(e.unit_id);
      if (e.event === "on_scene" && call.arrived_at === null) call.arrived_at = Date.parse(e.ts);
    }
    state.dirty.calls = state.dirty.now = true;
    renderPanels();
    if (state.selected?.type === "call" && state.selected.id === e.call_id) showSelected();
  }

  // panels

  function renderPanels() {
    if (!state.session) return;
    const at = now();
    const board = $("#board tbody");
    const waiting = (c) => (c.arrived_at === null ? 0 : 1);
    const calls = [...state.calls.values()].sort((a, b) => waiting(a) - waiting(b) || left(a, at) - left(b, at));
    board.replaceChildren(...calls.map((c) => {
      const row = el("tr", { onclick: () => select({ type: "call", id: c.call_id }) },
        el("td", { title: c.call_id }, `${t(c.category)} · ${c.call_id.slice(-5)}`),
        el("td", {}, t(c.zone_class)),
        el("td", {}, c.units.map((u) => state.units.get(u)?.callsign || u).join(", ") || "—"),
        el("td", { className: "left" }, c.arrived_at !== null ? t("on_scene") : clock(left(c, at))));
      if (overdue(c, at)) row.classList.add("overdue");
      if (state.selected?.type === "call" && state.selected.id === c.call_id) row.classList.add("selected");
      return row;
    }));
    const counts = new Map([...state.platforms.keys()].map((id) => [id, [0, 0, 0]]));
    for (const u of state.units.values()) {
      const row = counts.get(u.platform_id);
      if (!row) continue;
      row[!online(u) || u.status === "off_duty" ? 2 : u.status === "available" ? 0 : 1] += 1;
    }
    $("#platforms tbody").replaceChildren(...[...counts.entries()].map(([id, [free, busy, off]]) => el("tr", {},
      el("td", { title: id }, state.platforms.get(id).name), el("td", {}, free), el("td", {}, busy), el("td", {}, off))));
  }

  // coverage of the promise: each class's share of area an available unit reaches within its target

  async function loadCoverage() {
    try {
      state.coverage = await api("/v1/coverage");
    } catch {
      return;
    }
    renderCoverage();
  }

  function renderCoverage() {
    const classes = state.coverage?.classes || [];
    $("#coverage tbody").replaceChildren(...classes.map((c) => el("tr", { "data-zone-class": c.zone_class },
      el("td", {}, t(c.zone_class)), el("td", { className: "share" }, `${(c.share * 100).toFixed(1)}%`),
      el("td", {}, `${c.covered}/${c.cells}`))));
  }

  const left = (call, at) => call.target_s * 1000 - (at - call.received_at);

  function clock(ms) {
    const s = Math.round(ms / 1000), sign = s < 0 ? "-" : "", a = Math.abs(s);
    return `${sign}${Math.floor(a / 60)}:${String(a % 60).padStart(2, "0")}`;
  }

  function select(selection) {
    state.selected = selection;
    state.dirty.units = state.dirty.now = true;
    showSelected();
    renderPanels();
  }

  function closeDetail() {
    state.selected = null;
    $("#detail").hidden = true;
    state.dirty.units = state.dirty.now = true;
  }

  function showSelected() {
    const s = state.selected;
    if (!s) return;
    if (s.type === "unit") showUnit(s.id);
    else if (s.type === "call") showCall(s.id, s.recommendations);
    else if (s.type === "new") showNewCall(s.lat, s.lon);
  }

  function detail(title, ...content) {
    const panel = $("#detail");
    panel.hidden = false;
    panel.replaceChildren(el("h2", {}, title), ...content,
      el("div", { className: "card-actions" }, el("button", { type: "button", onclick: closeDetail }, t("close"))));
  }

  function showUnit(id) {
    const u = state.units.get(id);
    if (!u) return closeDetail();
    const age = u.ts === null ? "—" : `${Math.max(0, Math.round((now() - u.ts) / 1000))} s`;
    const statuses = ["available", "en_route", "on_scene", "off_duty"].filter((s) => s !== u.status);
    detail(`${t(u.kind)} ${u.callsign}`,
      el("table", {},
        row(t("unit"), u.id), row(t("platform"), state.platforms.get(u.platform_id)?.name || u.platform_id),
        row(t("status"), t(u.status)), row(t("call"), u.call_id || "—"), row(t("last_fix"), age),
        row(t("speed"), u.speed === undefined || u.speed === null ? "—" : `${Math.round(u.speed)} km/h`)),
      el("div", { className: "card-actions control" }, ...statuses.map((s) => el("button", {
        type: "button", "data-status": s, onclick: () => setStatus(u, s),
      }, t(s)))));
  }

  const row = (label, value) => el("tr", {}, el("th", {}, label), el("td", {}, value));

  async function setStatus(unit, status) {
    const needsCall = status === "en_route" || status === "on_scene";
    try {
      await api(`/v1/units/${encodeURIComponent(unit.id)}/status`, {
        method: "POST", body: JSON.stringify({ status, call_id: needsCall ? unit.call_id : null }),
      });
    } catch (error) {
      alertIn("#detail", error.message);
    }
  }

  function showCall(id, recommendations) {
    const c = state.calls.get(id);
    if (!c) return closeDetail();
    const at = now();
    detail(`${t(c.category)} · ${c.call_id}`,
      el("table", {},
        row(t("zone"), t(c.zone_class)), row(t("received"), new Date(c.received_at).toLocaleTimeString("zh-CN", { hour12: false })),
        row(t("time_left"), el("span", { id: "countdown" }, "")), row(t("unit"), c.units.join(", ") || "—"),
        row(t("address"), c.address || `${c.lat.toFixed(5)}, ${c.lon.toFixed(5)}`)),
      el("h2", {}, t("timeline")),
      el("table", {}, ...c.timeline.map((e) => row(t(e.event), `${new Date(Date.parse(e.ts)).toLocaleTimeString("zh-CN", { hour12: false })} ${e.unit_id || ""}`))),
      el("div", { className: "control", id: "recommendations" }),
      ...(c.units.length ? [] : [el("div", { className: "card-actions control" },
        el("button", { type: "button", "data-close-call": c.call_id, onclick: () => closeCall(c) }, t("close_call")))]));
    updateCountdown(at);
    if (recommendations) renderRecommendations(c, recommendations);
    else if (state.session.role !== "viewer") {
      api(`/v1/nearest?lat=${c.lat}&lon=${c.lon}&k=5`).then((r) => {
        if (state.selected?.type === "call" && state.selected.id === id) renderRecommendations(c, r.units);
      }).catch(() => {});
    }
  }

  function updateCountdown(at = now()) {
    const c = state.calls.get(state.selected?.id);
    const node = $("#countdown");
    if (!c || !node) return;
    node.textContent = c.arrived_at !== null ? t("on_scene") : clock(left(c, at));
    node.style.color = overdue(c, at) ? "#ff1744" : "";
  }

  function renderRecommendations(call, units) {
    const box = $("#recommendations");
    if (!box) return;
    if (!units.length) {
      box.replaceChildren(el("p", {}, t("no_units")));
      return;
    }
    box.replaceChildren(el("h2", {}, t("recommended")), el("table", { className: "recs" },
      el("tr", {}, el("th", {}, t("unit")), el("th", {}, t("distance")), el("th", {}, t("eta")), el("th", {}, "")),
      ...units.map((r) => el("tr", {},
        el("td", { title: r.unit_id }, `${t(r.kind)} ${state.units.get(r.unit_id)?.callsign || r.unit_id}`),
        el("td", {}, `${(r.distance_m / 1000).toFixed(2)} km`), el("td", {}, clock(r.eta_s * 1000)),
        el("td", {}, el("button", { type: "button", className: "primary", "data-assign": r.unit_id, onclick: () => assign(call, r.unit_id) }, t("assign")))))));
  }

  async function assign(call, unitId) {
    try {
      await api(`/v1/calls/${encodeURIComponent(call.call_id)}/assign`, { method: "POST", body: JSON.stringify({ unit_id: unitId }) });
      select({ type: "unit", id: unitId });
    } catch (error) {
      alertIn("#recommendations", error.message);
    }
  }

  // A call no unit is on (handled on the phone, a repeated report) is closed here; one with units closes when they clear.
  async function closeCall(call) {
    try {
      await api(`/v1/calls/${encodeURIComponent(call.call_id)}/close`, { method: "POST", body: "{}" });
      closeDetail();
    } catch (error) {
      alertIn("#detail", error.message);
    }
  }

  function alertIn(selector, message) {
    $(selector)?.append(el("p", { className: "error", role: "alert" }, message));
  }

  function onMapClick(event) {
    const hit = state.moving.hit(event.point);
    if (hit) {
      select(hit);
    } else if (state.session.role !== "viewer") {
      select({ type: "new", lat: event.lngLat.lat, lon: event.lngLat.lng });
    }
  }

  function showNewCall(lat, lon) {
    const places = el("select", { id: "place" }, el("option", { value: "" }, t("pick_address")),
      ...state.places.map((p, i) => el("option", { value: String(i) }, p.name)));
    const form = el("form", { id: "new-call", className: "control" },
      el("label", {}, el("span", {}, t("address")), places),
      el("label", {}, el("span", {}, t("lat")), el("input", { name: "lat", value: lat.toFixed(6), inputmode: "decimal", required: "" })),
      el("label", {}, el("span", {}, t("lon")), el("input", { name: "lon", value: lon.toFixed(6), inputmode: "decimal", required: "" })),
      el("label", {}, el("span", {}, t("category")), el("select", { name: "category" }, ...CATEGORIES.map((c) => el("option", { value: c }, t(c))))),
      el("label", {}, el("span", {}, t("priority")), el("select", { name: "priority" }, ...[1, 2, 3].map((p) => el("option", { value: String(p) }, p)))),
      el("div", { className: "card-actions" }, el("button", { type: "submit", className: "primary" }, t("create"))),
      el("p", { className: "error", role: "alert" }));
    places.addEventListener("change", () => {
      const place = chosenPlace(places);
      if (!place) return;
      form.elements.lat.value = place.lat.toFixed(6);
      form.elements.lon.value = place.lon.toFixed(6);
    });
    form.addEventListener("submit", (event) => { event.preventDefault(); createCall(form); });
    detail(t("new_call"), form);
  }

  function chosenPlace(select) {
    return select.value === "" ? null : state.places[Number(select.value)];
  }

  async function createCall(form) {
    const place = chosenPlace(form.querySelector("#place"));
    const body = {
      lat: Number(form.elements.lat.value), lon: Number(form.elements.lon.value),
      category: form.elements.category.value, priority: Number(form.elements.priority.value),
      address: place ? place.name : null,
    };
    try {
      const created = await api("/v1/calls", { method: "POST", body: JSON.stringify(body) });
      if (!state.calls.has(created.call_id)) {
        state.calls.set(created.call_id, {
          call_id: created.call_id, lat: body.lat, lon: body.lon, zone_class: created.zone_class,
          target_s: created.target_s, received_at: now(), category: body.category, priority: body.priority,
          address: body.address, units: [], arrived_at: null, timeline: [],
        });
        state.dirty.calls = state.dirty.now = true;
      }
      state.calls.get(created.call_id).address = body.address;
      select({ type: "call", id: created.call_id, recommendations: created.recommendations });
    } catch (error) {
      form.querySelector(".error").textContent = error.message;
    }
  }

  // start

  $("#login").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await signIn($("#token").value.trim());
    } catch (error) {
      $("#login-error").textContent = error.status === 401 ? t("bad_token") : error.message;
    }
  });
  for (const button of document.querySelectorAll("button.lang")) {
    button.addEventListener("click", () => {
      state.lang = state.lang === "zh" ? "en" : "zh";
      localStorage.setItem("kuaijing.lang", state.lang);
      applyLanguage();
    });
  }
  $("#logout").addEventListener("click", () => { signOut(); location.reload(); });
  applyLanguage();
  if (!window.maplibregl) {
    $("#login-error").textContent = "MapLibre GL JS is missing from /console/vendor/: run deploy/bootstrap.sh";
  } else if (state.token) {
    signIn(state.token).catch(() => signOut());
  }
})();
