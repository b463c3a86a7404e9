// What moves on the console's map (units with their heading and short track, open calls, the selection), drawn on
// two 2D canvases laid over MapLibre's. MapLibre repaints its whole WebGL scene for any change to a source: about
// 120 ms at 1920x1080 where WebGL is rendered in software (a wall-screen PC without a GPU driver, headless
// Chromium), so units moving once a second made the map step once a second. A 2D canvas redraws 2,000 units in
// about 10 ms, and a ping now repaints only this layer; the WebGL map draws what does not move (zones, streets,
// platforms) and repaints only when the view changes, when this layer follows it in the same frame.
"use strict";

(() => {
  window.KuaijingMovingLayer = class MovingLayer {
    static UNIT_RADIUS = 6;
    static BUSY_RADIUS = 10;
    static CALL_RADIUS = 9;
    static SELECTED_RADIUS = 14;
    static HIT_MARGIN = 3; // px beyond a mark's edge that still hits it
    static INK = "#0b1622";
    static SELECTED_COLOUR = "#4fc3f7";

    constructor(map) {
      this.map = map;
      this.units = [];
      this.calls = [];
      this.tracks = [];
      this.placed = { units: [], calls: [] };
      this.tracksCanvas = this.canvas("moving-tracks");
      this.marksCanvas = this.canvas("moving-marks");
      this.resize();
      this.viewChanged = false;
      map.on("move", () => { this.viewChanged = true; });
      map.on("resize", () => { this.resize(); this.viewChanged = true; });
      // After MapLibre drew a frame of a new view, in the same animation frame: the layer never lags the map.
      map.on("render", () => {
        if (!this.viewChanged) return;
        this.viewChanged = false;
        this.drawTracks();
        this.drawMarks();
      });
    }

    canvas(id) {
      const canvas = document.createElement("canvas");
      canvas.id = id;
      canvas.className = "moving-layer";
      this.map.getContainer().append(canvas);
      return canvas;
    }

    resize() {
      const box = this.map.getContainer();
      const ratio = window.devicePixelRatio || 1;
      this.width = box.clientWidth;
      this.height = box.clientHeight;
      for (const canvas of [this.tracksCanvas, this.marksCanvas]) {
        canvas.width = Math.round(this.width * ratio);
        canvas.height = Math.round(this.height * ratio);
        canvas.getContext("2d").setTransform(ratio, 0, 0, ratio, 0, 0);
      }
    }

    // units: [{id, lon, lat, colour, online, heading, busy, selected}]; calls: [{id, lon, lat, colour}];
    // tracks: [{colour, coordinates: [[lon, lat], ...]}]. Drawn by `drawMarks` / `drawTracks`.
    setUnits(units) { this.units = units; }
    setCalls(calls) { this.calls = calls; }
    setTracks(tracks) { this.tracks = tracks; }

    // Where a mark sits on the page, and whether it is on screen (with a margin for its size).
    place(lon, lat) {
      const { x, y } = this.map.project([lon, lat]);
      const margin = MovingLayer.SELECTED_RADIUS + 2;
      const shown = x > -margin && y > -margin && x < this.width + margin && y < this.height + margin;
      return shown ? { x, y } : null;
    }

    drawTracks() {
      const g = this.tracksCanvas.getContext("2d");
      g.clearRect(0, 0, this.width, this.height);
      g.globalAlpha = 0.45;
      g.lineWidth = 1.5;
      for (const [colour, tracks] of groupBy(this.tracks, (track) => track.colour)) {
        g.strokeStyle = colour;
        g.beginPath();
        for (const track of tracks) {
          track.coordinates.forEach(([lon, lat], i) => {
            const { x, y } = this.map.project([lon, lat]);
            if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
          });
        }
        g.stroke();
      }
    }

    drawMarks() {
      const M = MovingLayer;
      const g = this.marksCanvas.getContext("2d");
      g.clearRect(0, 0, this.width, this.height);
      const units = [];
      for (const unit of this.units) {
        const at = this.place(unit.lon, unit.lat);
        if (at) units.push({ unit, ...at });
      }
      const calls = [];
      for (const call of this.calls) {
        const at = this.place(call.lon, call.lat);
        if (at) calls.push({ call, ...at });
      }
      this.placed = { units, calls };

      g.lineWidth = 2;
      g.strokeStyle = "#ffffff";
      circles(g, units.filter((u) => u.unit.busy), M.BUSY_RADIUS);
      g.stroke();

      g.lineWidth = 1;
      g.strokeStyle = M.INK;
      for (const [colour, group] of groupBy(units, (u) => u.unit.colour)) {
        g.fillStyle = colour;
        circles(g, group, M.UNIT_RADIUS);
        g.fill();
        g.stroke();
      }

      // The heading: an arrow just beyond the unit's edge, turning with the map.
      const bearing = this.map.getBearing();
      g.fillStyle = "#ffffff";
      g.lineWidth = 1.2;
      g.beginPath();
      for (const { unit, x, y } of units) {
        if (!unit.online) continue;
        const angle = ((unit.heading || 0) - bearing) * Math.PI / 180;
        const sin = Math.sin(angle), cos = Math.cos(angle);
        const at = (along, across) => [x + sin * along + cos * across, y - cos * along + sin * across];
        g.moveTo(...at(12.8, 0));
        g.lineTo(...at(5.6, 4.8));
        g.lineTo(...at(5.6, -4.8));
        g.closePath();
      }
      g.fill();
      g.stroke();

      g.lineWidth = 2;
      g.strokeStyle = "#ffffff";
      for (const [colour, group] of groupBy(calls, (c) => c.call.colour)) {
        g.fillStyle = colour;
        circles(g, group, M.CALL_RADIUS);
        g.fill();
        g.stroke();
      }

      g.lineWidth = 3;
      g.strokeStyle = M.SELECTED_COLOUR;
      circles(g, units.filter((u) => u.unit.selected), M.SELECTED_RADIUS);
      g.stroke();
    }

    // The call or unit under a point of the map (calls are drawn over units), as drawn last; null when none.
    hit(point) {
      const M = MovingLayer;
      const nearest = (placed, radius) => {
        let best = null, bestDistance = (radius + M.HIT_MARGIN) ** 2;
        for (const mark of placed) {
          const distance = (mark.x - point.x) ** 2 + (mark.y - point.y) ** 2;
          if (distance <= bestDistance) { best = mark; bestDistance = distance; }
        }
        return best;
      };
      const call = nearest(this.placed.calls, M.CALL_RADIUS);
      if (call) return { type: "call", id: call.call.id };
      const unit = nearest(this.placed.units, M.UNIT_RADIUS);
      return unit ? { type: "unit", id: unit.unit.id } : null;
    }
  };

  function circles(g, placed, radius) {
    g.beginPath();
    for (const { x, y } of placed) {
      g.moveTo(x + radius, y);
      g.arc(x, y, radius, 0, 2 * Math.PI);
    }
  }

  function groupBy(items, keyOf) {
    const groups = new Map();
    for (const item of items) {
      const key = keyOf(item);
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(item);
    }
    return groups;
  }
})();
