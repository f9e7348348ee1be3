// The ONNX Runtime reference scripts/bench-onnx.sh measures vaed against: the
// same weights (scripts/bench_onnx_export.py) in onnxruntime-node's CPU
// session behind node:http, one worker process per core (node:cluster, the
// primary hands accepted connections to the workers round-robin).
//
//   node scripts/bench_onnx_server.js ONNX_DIR PORT [WORKERS]
//
// ONNX_DIR holds encoder.onnx, decoder.onnx and model.json; WORKERS defaults
// to the number of cores. onnxruntime-node is loaded from scripts/onnx/ (the
// pinned package bench-onnx.sh installs there). Each session runs one
// intra-op thread, as each vaed compute thread runs one BLAS thread: one
// worker per core keeps every core busy without oversubscribing them.
// It answers what the benchmark sends, in vaed's JSON shapes:
//   POST /encode {"x": [[D floats], ...]}     -> {"model", "version", "mu", "logvar"}
//   POST /decode?format=json {"z": [[Z], ...]} -> {"model", "version", "z", "x"}
//   POST /sample?n=N&format=json[&seed=S]     -> {"model", "version", "seed", "temperature", "z", "x"}
// with z ~ N(0, I) (Box-Muller over a seeded 32-bit generator). Floats are
// written by JSON.stringify, as a Node service would. Bad input is a 4xx
// {"error": {"code", "message"}} like vaed's. Prints "ready" once every
// worker listens.
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { createRequire } = require('node:module');

const MAX_BODY = 64 << 20; // vaed's --max-body-mb default
const MAX_SAMPLES = 1024;

function usage() {
    console.error('usage: node bench_onnx_server.js ONNX_DIR PORT [WORKERS]');
    process.exit(2);
}

const [onnxDir, portArg, workersArg] = process.argv.slice(2);
if (!onnxDir || !portArg) usage();
const port = Number(portArg);
const workers = Number(workersArg || os.availableParallelism());

if (cluster.isPrimary) {
    let listening = 0;
    cluster.on('listening', () => {
        if (++listening === workers) console.log('ready');
    });
    cluster.on('exit', (w, code, signal) => {
        console.error(`bench_onnx_server: worker ${w.process.pid} exited (${signal || code})`);
        process.exit(1);
    });
    for (let i = 0; i < workers; i++) cluster.fork();
} else {
    serve().catch((e) => {
        console.error('bench_onnx_server:', e);
        process.exit(1);
    });
}

class BadRequest extends Error {
    constructor(status, code, message) {
        super(message);
        this.status = status;
        this.code = code;
    }
}

// rows(body, key, width) -> Float32Array of the (n, width) matrix body[key].
function rows(body, key, width) {
    const m = body && body[key];
    if (!Array.isArray(m) || m.length === 0) {
        throw new BadRequest(400, 'bad_request', `"${key}" must be a non-empty array of rows`);
    }
    const out = new Float32Array(m.length * width);
    for (let i = 0; i < m.length; i++) {
        const r = m[i];
        if (!Array.isArray(r) || r.length !== width) {
            throw new BadRequest(400, 'bad_shape', `"${key}"[${i}] must have ${width} numbers`);
        }
        for (let j = 0; j < width; j++) {
            if (typeof r[j] !== 'number') throw new BadRequest(400, 'bad_request', `"${key}"[${i}][${j}] is not a number`);
            out[i * width + j] = r[j];
        }
    }
    return out;
}

// nested(data, n, width): a (n, width) Float32Array as an array of rows.
// A plain loop: Array.from over a subarray takes 10x longer (V8's iterator).
function nested(data, n, width) {
    const out = new Array(n);
    for (let i = 0; i < n; i++) {
        const row = new Array(width);
        for (let j = 0; j < width; j++) row[j] = data[i * width + j];
        out[i] = row;
    }
    return out;
}

// mulberry32: a small seeded generator, so ?seed=S repeats its draws.
function generator(seed) {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

function normals(count, seed) {
    const next = generator(seed);
    const out = new Float32Array(count);
    for (let i = 0; i < count; i += 2) {
        const u = 1 - next(); // (0, 1]: log(u) is finite
        const r = Math.sqrt(-2 * Math.log(u));
        const t = 2 * Math.PI * next();
        out[i] = r * Math.cos(t);
        if (i + 1 < count) out[i + 1] = r * Math.sin(t);
    }
    return out;
}

function readBody(req) {
    return new Promise((resolve, reject) => {
        const declared = Number(req.headers['content-length'] || 0);
        if (declared > MAX_BODY) return reject(new BadRequest(413, 'too_large', 'body too large'));
        const chunks = [];
        let size = 0;
        req.on('data', (c) => {
            size += c.length;
            if (size > MAX_BODY) {
                reject(new BadRequest(413, 'too_large', 'body too large'));
                req.destroy();
                return;
            }
            chunks.push(c);
        });
        req.on('end', () => resolve(Buffer.concat(chunks)));
        req.on('error', reject);
    });
}

function parseJson(buf) {
    try {
        return JSON.parse(buf.toString('utf8'));
    } catch (e) {
        throw new BadRequest(400, 'bad_json', 'the body is not JSON');
    }
}

function wantJson(query) {
    if (query.get('format') !== 'json') throw new BadRequest(400, 'bad_format', 'this reference answers format=json only');
}

async function serve() {
    const ort = createRequire(path.join(__dirname, 'onnx', 'package.json'))('onnxruntime-node');
    const shape = JSON.parse(fs.readFileSync(path.join(onnxDir, 'model.json'), 'utf8'));
    const D = shape.D;
    const Z = shape.Z;
    const options = {
        intraOpNumThreads: 1,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
    };
    const encoder = await ort.InferenceSession.create(path.join(onnxDir, 'encoder.onnx'), options);
    const decoder = await ort.InferenceSession.create(path.join(onnxDir, 'decoder.onnx'), options);

    async function decode(z, n) {
        const out = await decoder.run({ z: new ort.Tensor('float32', z, [n, Z]) });
        return out.x.data;
    }

    async function handle(req, url) {
        if (req.method !== 'POST') throw new BadRequest(405, 'method_not_allowed', 'POST only');
        const q = url.searchParams;
        const body = await readBody(req);
        if (url.pathname === '/encode') {
            const x = rows(parseJson(body), 'x', D);
            const n = x.length / D;
            const out = await encoder.run({ x: new ort.Tensor('float32', x, [n, D]) });
            return { model: 'digits', version: 1, mu: nested(out.mu.data, n, Z), logvar: nested(out.logvar.data, n, Z) };
        }
        if (url.pathname === '/decode') {
            wantJson(q);
            const z = rows(parseJson(body), 'z', Z);
            const n = z.length / Z;
            return { model: 'digits', version: 1, z: nested(z, n, Z), x: nested(await decode(z, n), n, D) };
        }
        if (url.pathname === '/sample') {
            wantJson(q);
            const n = Number(q.get('n') || 16);
            if (!Number.isInteger(n) || n < 1 || n > MAX_SAMPLES) {
                throw new BadRequest(400, 'bad_request', `n must be an integer in 1..${MAX_SAMPLES}`);
            }
            const seed = q.has('seed') ? Number(q.get('seed')) : Math.floor(Math.random() * 4294967296);
            if (!Number.isInteger(seed) || seed < 0 || seed > 4294967295) {
                throw new BadRequest(400, 'bad_request', 'seed must be an integer in 0..2^32-1');
            }
            const z = normals(n * Z, seed);
            return { model: 'digits', version: 1, seed, temperature: 1, z: nested(z, n, Z), x: nested(await decode(z, n), n, D) };
        }
        throw new BadRequest(404, 'not_found', `no route ${url.pathname}`);
    }

    const server = http.createServer((req, res) => {
        const url = new URL(req.url, 'http://localhost');
        handle(req, url).then(
            (answer) => reply(res, 200, answer),
            (e) => {
                if (!(e instanceof BadRequest)) console.error('bench_onnx_server:', e);
                const status = e instanceof BadRequest ? e.status : 500;
                reply(res, status, { error: { code: e.code || 'internal', message: e.message } });
            },
        );
    });
    server.keepAliveTimeout = 60000;
    server.listen(port, '127.0.0.1');
}

function reply(res, status, answer) {
    const body = JSON.stringify(answer);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
}
