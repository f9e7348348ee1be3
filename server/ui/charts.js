// charts.js: the dashboard's own small canvas charts — lines for loss
// curves and a scatter for the latent map. Pure drawing: callers hand in
// numbers.

export const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd',
  '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

function niceRange(lo, hi) {
  if (!isFinite(lo) || !isFinite(hi)) return [0, 1];
  if (lo === hi) { lo -= 1; hi += 1; }
  const pad = (hi - lo) * 0.05;
  return [lo - pad, hi + pad];
}

// series: [{label, color, points: [[x, y], ...]}]; draws axes, ticks, legend.
export function lineChart(canvas, series, { title = '', xLabel = 'epoch' } = {}) {
  const ctx = canvas.getContext('2d');
  const W = canvas.width, H = canvas.height, L = 56, R = 12, T = 24, B = 32;
  ctx.clearRect(0, 0, W, H);
  const all = series.flatMap((s) => s.points).filter((p) => isFinite(p[1]));
  ctx.fillStyle = '#1b1f24';
  ctx.font = '12px system-ui, sans-serif';
  ctx.fillText(title, L, 14);
  if (!all.length) { ctx.fillText('no data yet', L, H / 2); return; }
  const [x0, x1] = niceRange(Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0])));
  const [y0, y1] = niceRange(Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1])));
  const px = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  ctx.strokeStyle = '#d0d7de';
  ctx.beginPath();
  ctx.moveTo(L, T); ctx.lineTo(L, H - B); ctx.lineTo(W - R, H - B);
  ctx.stroke();
  ctx.fillStyle = '#5b6470';
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    ctx.fillText(y.toPrecision(4), 2, py(y) + 4);
  }
  // x ticks: whole numbers (epochs) when the span allows, else quarters
  const span = x1 - x0, step = span >= 4 ? Math.ceil(span / 6) : span / 4;
  for (let x = span >= 4 ? Math.ceil(x0) : x0; x <= x1 + 1e-9; x += step) {
    ctx.fillText(span >= 4 ? String(x) : x.toFixed(1), px(x) - 4, H - B + 14);
  }
  ctx.fillText(xLabel, W - R - 40, H - 4);
  let lx = L + 8;
  for (const s of series) {
    const pts = s.points.filter((p) => isFinite(p[1]));
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(px(p[0]), py(p[1])) : ctx.moveTo(px(p[0]), py(p[1]))));
    ctx.stroke();
    if (pts.length === 1) ctx.fillRect(px(pts[0][0]) - 2, py(pts[0][1]) - 2, 4, 4);
    ctx.lineWidth = 1;
    ctx.fillStyle = s.color;
    ctx.fillRect(lx, T + 2, 10, 10);
    ctx.fillStyle = '#1b1f24';
    ctx.fillText(s.label, lx + 14, T + 11);
    lx += ctx.measureText(s.label).width + 32;
  }
}

// A scatter of points [x, y, label, index]; returns the view's transforms
// so the caller can map the pointer back to data coordinates.
export function scatter(canvas, points, bounds) {
  const ctx = canvas.getContext('2d');
  const W = canvas.width, H = canvas.height, M = 10;
  ctx.clearRect(0, 0, W, H);
  const sx = (W - 2 * M) / (bounds.x1 - bounds.x0), sy = (H - 2 * M) / (bounds.y1 - bounds.y0);
  const view = {
    toCanvas: (x, y) => [M + (x - bounds.x0) * sx, H - M - (y - bounds.y0) * sy],
    toData: (cx, cy) => [bounds.x0 + (cx - M) / sx, bounds.y0 + (H - M - cy) / sy],
  };
  for (const p of points) {
    const [cx, cy] = view.toCanvas(p[0], p[1]);
    ctx.fillStyle = p[2] === null ? '#555' : PALETTE[p[2] % PALETTE.length];
    ctx.globalAlpha = 0.7;
    ctx.fillRect(cx - 1.5, cy - 1.5, 3, 3);
  }
  ctx.globalAlpha = 1;
  return view;
}

export function boundsOf(points) {
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const p of points) {
    x0 = Math.min(x0, p[0]); x1 = Math.max(x1, p[0]);
    y0 = Math.min(y0, p[1]); y1 = Math.max(y1, p[1]);
  }
  const [a, b] = niceRange(x0, x1), [c, d] = niceRange(y0, y1);
  return { x0: a, x1: b, y0: c, y1: d };
}
