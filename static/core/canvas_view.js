// Drawing an image, a mask overlay and the green/red points on a canvas scaled for display.
// Points and masks are in image pixels (x = column, y = row); the view maps them to the canvas.
import { decodeRle } from "./rle.js";

export const COLORS = { green: "#10b020", red: "#e0202a", mask: [30, 144, 255], gt: [255, 196, 0] };

/** Display scale so that the longer side is about `target` pixels. */
export function displayScale(width, height, target = 360) {
  return target / Math.max(width, height);
}

export function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`could not load ${url}`));
    img.src = url;
  });
}

/** An offscreen canvas (image size) holding `mask` (Uint8Array, row-major) in a colour. */
export function maskLayer(mask, width, height, rgb, alpha = 150) {
  const layer = document.createElement("canvas");
  layer.width = width; layer.height = height;
  const ctx = layer.getContext("2d");
  const data = ctx.createImageData(width, height);
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    data.data[i * 4] = rgb[0]; data.data[i * 4 + 1] = rgb[1]; data.data[i * 4 + 2] = rgb[2]; data.data[i * 4 + 3] = alpha;
  }
  ctx.putImageData(data, 0, 0);
  return layer;
}

export function rleLayer(rle, rgb) {
  const { mask, width, height } = decodeRle(rle);
  return maskLayer(mask, width, height, rgb);
}

/** The ground-truth PNG (0/255) as a mask layer. */
export function pngMaskLayer(img, rgb) {
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const px = ctx.getImageData(0, 0, c.width, c.height).data;
  const mask = new Uint8Array(c.width * c.height);
  for (let i = 0; i < mask.length; i++) mask[i] = px[i * 4] > 127 ? 1 : 0;
  return maskLayer(mask, c.width, c.height, rgb);
}

export class View {
  constructor(canvas, width, height, scale) {
    this.canvas = canvas;
    this.width = width; this.height = height; this.scale = scale;
    canvas.width = Math.round(width * scale);
    canvas.height = Math.round(height * scale);
    this.ctx = canvas.getContext("2d");
    this.ctx.imageSmoothingEnabled = scale < 1;
  }

  /** Image pixel (integer column, row) under a mouse event, clamped to the image. */
  pixelAt(event) {
    const rect = this.canvas.getBoundingClientRect();
    const x = Math.floor(((event.clientX - rect.left) / rect.width) * this.width);
    const y = Math.floor(((event.clientY - rect.top) / rect.height) * this.height);
    return [Math.min(Math.max(x, 0), this.width - 1), Math.min(Math.max(y, 0), this.height - 1)];
  }

  draw({ image, dim = 0, layers = [], green = [], red = [], pending = [], radius = 5 }) {
    const { ctx, canvas } = this;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (image) ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    if (dim) { ctx.fillStyle = `rgba(0,0,0,${dim})`; ctx.fillRect(0, 0, canvas.width, canvas.height); }
    for (const layer of layers) if (layer) ctx.drawImage(layer, 0, 0, canvas.width, canvas.height);
    const center = (v) => (v + 0.5) * this.scale;
    const dot = (x, y, color) => {
      ctx.beginPath(); ctx.arc(center(x), center(y), radius, 0, 2 * Math.PI);
      ctx.fillStyle = color; ctx.fill();
      ctx.lineWidth = 1.5; ctx.strokeStyle = "#fff"; ctx.stroke();
    };
    for (const [x, y] of green) dot(x, y, COLORS.green);
    for (const [x, y] of red) dot(x, y, COLORS.red);
    for (const p of pending) {  // not yet confirmed by the server: hollow and dashed
      ctx.beginPath(); ctx.setLineDash([3, 3]); ctx.lineWidth = 2;
      ctx.strokeStyle = p.action === "remove" ? "#444" : COLORS[p.mode];
      ctx.arc(center(p.x), center(p.y), radius + 2, 0, 2 * Math.PI); ctx.stroke(); ctx.setLineDash([]);
    }
  }
}
