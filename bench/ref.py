"""Reference driver for bench/run.exs: the same workloads on raw MLX and numpy.

bench/run.exs starts this as a long-lived subprocess and drives it with one
JSON command per line on stdin, so that reference repetitions interleave with
EMLX's. Every reply is one line of text:

  {"cmd": "setup", "key": K, "impl": "mlx"|"numpy", "workload": W, "params": {...}}
      -> "ok" | "skip <reason>" | "error <message>"
  {"cmd": "run", "key": K, "inner": N}
      -> "ok <nanoseconds for N back-to-back calls>" | "error <message>"
  {"cmd": "drop", "key": K}  -> "ok"
  {"cmd": "quit"}            -> (exits)

At start it prints "ready <key>=<value> ..." describing itself. Timing is done
here (perf_counter_ns around the calls), so the pipe's latency is not counted.
Data is built with the same formulas as the Elixir side (sin of a scaled
iota), so both sides compute on the same values.
"""

import collections
import json
import os
import sys
import time
import traceback

import numpy as np

try:
    import mlx.core as mx
except Exception as e:  # reported per setup, numpy still works
    mx = None
    MLX_ERROR = f"{type(e).__name__}: {e}"
else:
    MLX_ERROR = None

DEVICE = os.environ.get("EMLX_BENCH_DEVICE", "cpu")


def wave(n, scale=0.001, dtype="float32"):
    """sin(i * scale) for i in 0..n-1, as the Elixir side builds it."""
    x = mx.sin(mx.arange(n, dtype=mx.float32) * scale)
    return x.astype(getattr(mx, dtype)) if dtype != "float32" else x


def np_wave(n, scale=0.001, dtype="float32"):
    return np.sin(np.arange(n, dtype=np.float32) * np.float32(scale)).astype(dtype)


def ready(*arrays):
    mx.eval(*arrays)
    return arrays[0] if len(arrays) == 1 else arrays


# --- workloads: each returns a zero-argument function, one repetition --------
# MLX versions end with mx.eval (or a read-back), so each call does the work.


def mlx_dispatch_build(p):
    c = ready(mx.full((4,), 1.0e-3, dtype=mx.float32))
    x0 = ready(wave(4))
    n = p["ops"]

    def run():
        x = x0
        for _ in range(n):
            x = mx.add(x, c)
        return x

    return run


def mlx_dispatch_eval(p):
    build = mlx_dispatch_build(p)
    return lambda: mx.eval(build())


def mlx_round_trip(p):
    a = ready(wave(4))
    b = ready(mx.cos(a))

    def run():
        c = mx.add(a, b)
        mx.eval(c)
        return bytes(memoryview(c))

    return run


def np_round_trip(p):
    a = np_wave(4)
    b = np.cos(a)
    return lambda: (a + b).tobytes()


def mlx_matmul(p):
    n, t = p["n"], p["dtype"]
    a = ready(wave(n * n, dtype=t).reshape(n, n))
    b = ready(mx.cos(a))
    return lambda: mx.eval(mx.matmul(a, b))


def np_matmul(p):
    n, t = p["n"], p["dtype"]
    if t != "float32":
        raise Skip(f"numpy has no {t}")
    a = np_wave(n * n).reshape(n, n)
    b = np.cos(a)
    return lambda: a @ b


def mlx_elementwise(p):
    n = p["n"]
    x = ready(wave(n))
    y, z = ready(mx.cos(x), mx.sin(mx.cos(x)))
    return lambda: mx.eval(mx.add(mx.multiply(mx.exp(x), y), z))


def np_elementwise(p):
    x = np_wave(p["n"])
    y, z = np.cos(x), np.sin(np.cos(x))
    return lambda: np.exp(x) * y + z


def mlx_sum(p):
    shape, axes = p["shape"], p["axes"]
    x = ready(wave(int(np.prod(shape))).reshape(shape))
    return lambda: mx.eval(mx.sum(x, axis=axes))


def np_sum(p):
    shape, axes = p["shape"], tuple(p["axes"])
    x = np_wave(int(np.prod(shape))).reshape(shape)
    return lambda: x.sum(axis=axes)


def mlx_softmax(p):
    n = p["n"]
    x = ready(wave(n * n, 0.01).reshape(n, n))
    if p["form"] == "fused":
        return lambda: mx.eval(mx.softmax(x, axis=-1))

    def run():
        e = mx.exp(mx.subtract(x, mx.max(x, axis=-1, keepdims=True)))
        mx.eval(mx.divide(e, mx.sum(e, axis=-1, keepdims=True)))

    return run


def np_softmax(p):
    n = p["n"]
    x = np_wave(n * n, 0.01).reshape(n, n)

    def run():
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    return run


def mlp_shapes(p):
    return p["batch"], p["inputs"], p["hidden"], p["classes"]


def mlx_mlp(p):
    b, i, h, k = mlp_shapes(p)
    params = {
        "w1": wave(i * h, 0.001).reshape(i, h) * 0.05,
        "b1": mx.zeros((h,)),
        "w2": wave(h * k, 0.002).reshape(h, k) * 0.05,
        "b2": mx.zeros((k,)),
    }
    x = wave(b * i, 0.003).reshape(b, i)
    y = (mx.arange(b)[:, None] % k == mx.arange(k)[None, :]).astype(mx.float32)
    mx.eval(params, x, y)

    def loss(ps):
        hid = mx.maximum(x @ ps["w1"] + ps["b1"], 0.0)
        logits = hid @ ps["w2"] + ps["b2"]
        logp = logits - mx.logsumexp(logits, axis=1, keepdims=True)
        return -mx.mean(mx.sum(y * logp, axis=1))

    grad = mx.grad(loss)
    return lambda: mx.eval(grad(params))


def np_mlp(p):
    b, i, h, k = mlp_shapes(p)
    w1 = np_wave(i * h, 0.001).reshape(i, h) * np.float32(0.05)
    b1 = np.zeros(h, np.float32)
    w2 = np_wave(h * k, 0.002).reshape(h, k) * np.float32(0.05)
    b2 = np.zeros(k, np.float32)
    x = np_wave(b * i, 0.003).reshape(b, i)
    y = (np.arange(b)[:, None] % k == np.arange(k)[None, :]).astype(np.float32)

    def run():
        # forward
        pre = x @ w1 + b1
        hid = np.maximum(pre, 0)
        logits = hid @ w2 + b2
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        sm = e / e.sum(axis=1, keepdims=True)
        # backward of -mean(sum(y * log_softmax(logits)))
        dlogits = (sm - y) / b
        dw2, db2 = hid.T @ dlogits, dlogits.sum(axis=0)
        dpre = (dlogits @ w2.T) * (pre > 0)
        dw1, db1 = x.T @ dpre, dpre.sum(axis=0)
        return dw1, db1, dw2, db2

    return run


def mlx_sdpa(p):
    b, h, l, d = p["b"], p["h"], p["l"], p["d"]
    t = p.get("dtype", "float32")
    q = wave(b * h * l * d, 0.001, t).reshape(b, h, l, d)
    k = wave(b * h * l * d, 0.002, t).reshape(b, h, l, d)
    v = wave(b * h * l * d, 0.003, t).reshape(b, h, l, d)
    mx.eval(q, k, v)
    scale = 1.0 / d**0.5
    mask = "causal" if p.get("causal") else None
    return lambda: mx.eval(mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask))


def mlx_add(p):
    a = ready(wave(p["n"]))
    b = ready(mx.cos(a))
    if not p.get("keep"):
        return lambda: mx.eval(mx.add(a, b))
    kept = collections.deque(maxlen=p["keep"])

    def run():
        c = mx.add(a, b)
        mx.eval(c)
        kept.append(c)

    return run


def block_params(p, w, ones, k=1):
    """Layer k's weights (bench/harness/nx_block.exs builds the same)."""
    d, hid = p["dim"], p["hidden"]
    return (
        w(d, d, 0.0011 * k), w(d, d, 0.0012 * k), w(d, d, 0.0013 * k), w(d, d, 0.0014 * k),
        w(d, hid, 0.0015 * k), w(hid, d, 0.0016 * k), w(d, hid, 0.0017 * k), ones(d), ones(d),
    )


def mlx_block(p):
    b, t, d, heads = p["batch"], p["seq"], p["dim"], p["heads"]
    dt = p["dtype"]
    hd = d // heads
    layers = [
        block_params(
            p, lambda r, c, s: wave(r * c, s, dt).reshape(r, c) * 0.02, lambda n: mx.ones((n,), dtype=getattr(mx, dt)), k
        )
        for k in range(1, p.get("layers", 1) + 1)
    ]
    x = wave(b * t * d, 0.001, dt).reshape(b, t, d)
    mx.eval(layers, x)

    def split(y):
        return y.reshape(b, t, heads, hd).transpose(0, 2, 1, 3)

    def forward(x, ps):
        wq, wk, wv, wo, w1, w2, w3, g1, g2 = ps
        h = mx.fast.rms_norm(x, g1, 1.0e-5)
        att = mx.fast.scaled_dot_product_attention(
            split(h @ wq), split(h @ wk), split(h @ wv), scale=1.0 / hd**0.5, mask="causal"
        )
        x = x + att.transpose(0, 2, 1, 3).reshape(b, t, d) @ wo
        h = mx.fast.rms_norm(x, g2, 1.0e-5)
        gate = h @ w1
        return x + (gate * mx.sigmoid(gate) * (h @ w3)) @ w2

    def stack(x, layers):
        for ps in layers:
            x = forward(x, ps)
        return x

    fn = mx.compile(stack) if p.get("compiled") else stack
    return lambda: mx.eval(fn(x, layers))


def np_sdpa(p):
    b, h, l, d = p["b"], p["h"], p["l"], p["d"]
    q = np_wave(b * h * l * d, 0.001).reshape(b, h, l, d)
    k = np_wave(b * h * l * d, 0.002).reshape(b, h, l, d)
    v = np_wave(b * h * l * d, 0.003).reshape(b, h, l, d)
    scale = np.float32(1.0 / d**0.5)

    def run():
        s = (q @ k.transpose(0, 1, 3, 2)) * scale
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True)) @ v

    return run


def xor_data(batch, xp):
    """Axon's xor batch: inputs (i % 2, i // 2 % 2), targets their xor."""
    i = xp.arange(batch).reshape(batch, 1)
    x = xp.concatenate([i % 2, (i // 2) % 2], axis=1).astype(xp.float32)
    y = (x[:, 0:1] != x[:, 1:2]).astype(xp.float32)
    return x, y


def mlx_xor_step(p):
    x, y = xor_data(p["batch"], mx)
    params = [wave(16, 0.7).reshape(2, 8), mx.zeros((8,)), wave(8, 1.3).reshape(8, 1), mx.zeros((1,))]
    mx.eval(params, x, y)

    def loss(ps):
        w1, b1, w2, b2 = ps
        pr = mx.sigmoid(mx.tanh(x @ w1 + b1) @ w2 + b2)
        return -mx.mean(y * mx.log(pr + 1e-7) + (1 - y) * mx.log(1 - pr + 1e-7))

    grad = mx.grad(loss)

    def run():
        gs = grad(params)
        new = [w - 0.1 * g for w, g in zip(params, gs)]
        mx.eval(new)
        return [bytes(memoryview(w)) for w in new]

    return run


def np_xor_step(p):
    b = p["batch"]
    x, y = xor_data(b, np)
    w1, w2 = np_wave(16, 0.7).reshape(2, 8), np_wave(8, 1.3).reshape(8, 1)
    b1, b2 = np.zeros(8, np.float32), np.zeros(1, np.float32)

    def run():
        h = np.tanh(x @ w1 + b1)
        pr = 1 / (1 + np.exp(-(h @ w2 + b2)))
        # d loss / d logit of the mean binary cross-entropy
        dz = (pr - y) / b
        dw2, db2 = h.T @ dz, dz.sum(axis=0)
        dh = (dz @ w2.T) * (1 - h * h)
        dw1, db1 = x.T @ dh, dh.sum(axis=0)
        return w1 - 0.1 * dw1, b1 - 0.1 * db1, w2 - 0.1 * dw2, b2 - 0.1 * db2

    return run


def mlx_random_uniform(p):
    key = mx.random.key(42)
    shape = tuple(p["shape"])

    def run():
        u = mx.random.uniform(shape=shape, key=key)
        mx.eval(u)
        return bytes(memoryview(u))

    return run


def mlx_scalar_read_each(p):
    c = ready(mx.array(1.0e-3, dtype=mx.float32))
    x0 = ready(mx.array(0.5, dtype=mx.float32))

    def run():
        x = x0
        for _ in range(p["ops"]):
            x = mx.add(x, c)
            x.item()
        return x

    return run


def np_scalar_read_each(p):
    c, x0 = np.float32(1.0e-3), np.array(0.5, dtype=np.float32)

    def run():
        x = x0
        for _ in range(p["ops"]):
            x = np.add(x, c)
            float(x)
        return x

    return run


def mlx_to_binary(p):
    x = ready(wave(p["bytes"] // 4))
    if p["copy"]:
        return lambda: bytes(memoryview(x))
    return lambda: memoryview(x)


def mlx_from_binary(p):
    blob = np_wave(p["bytes"] // 4).tobytes()

    def run():
        # mx.array copies numpy's buffer; np.frombuffer itself is a view.
        a = mx.array(np.frombuffer(blob, dtype=np.float32))
        mx.eval(a)
        return a

    return run


def mlx_from_binary_slices(p):
    blob = np_wave(p["bytes"] // 4).tobytes()
    count = p["bytes"] // 4 // p["pieces"]

    def run():
        arrays = [mx.array(np.frombuffer(blob, np.float32, count, i * count * 4)) for i in range(p["pieces"])]
        mx.eval(arrays)
        return arrays

    return run


def mlx_jit_call(p):
    a = ready(wave(4))
    b = ready(mx.cos(a))
    return lambda: mx.eval(mx.add(a, b))


def np_memcpy(p):
    src = np_wave(p["bytes"] // 4)
    dst = np.empty_like(src)
    return lambda: np.copyto(dst, src)


class Skip(Exception):
    pass


# --- PyTorch (CUDA), for --device gpu: every call ends with a synchronize, as
# mx.eval and EMLX.eval wait for the result ---------------------------------


def torch_cuda():
    try:
        import torch
    except Exception as e:
        raise Skip(f"torch does not import: {type(e).__name__}: {e}")
    if not torch.cuda.is_available():
        raise Skip("torch has no CUDA device")
    return torch


def t_wave(torch, n, scale=0.001, dtype="float32"):
    x = torch.sin(torch.arange(n, dtype=torch.float32, device="cuda") * scale)
    return x.to(getattr(torch, dtype))


def synced(torch, f):
    def run():
        out = f()
        torch.cuda.synchronize()
        return out

    return run


def torch_matmul(p):
    torch = torch_cuda()
    n = p["n"]
    a = t_wave(torch, n * n, dtype=p["dtype"]).reshape(n, n)
    b = torch.cos(a)
    return synced(torch, lambda: a @ b)


def torch_add(p):
    torch = torch_cuda()
    a = t_wave(torch, p["n"])
    b = torch.cos(a)
    return synced(torch, lambda: a + b)


def torch_sdpa(p):
    torch = torch_cuda()
    import torch.nn.functional as F

    b, h, l, d, t = p["b"], p["h"], p["l"], p["d"], p.get("dtype", "float32")
    q, k, v = (t_wave(torch, b * h * l * d, s, t).reshape(b, h, l, d) for s in (0.001, 0.002, 0.003))
    return synced(torch, lambda: F.scaled_dot_product_attention(q, k, v, is_causal=bool(p.get("causal"))))


def torch_block(p):
    torch = torch_cuda()
    import torch.nn.functional as F

    b, t, d, heads, dt = p["batch"], p["seq"], p["dim"], p["heads"], p["dtype"]
    hd = d // heads
    ps = block_params(
        p,
        lambda r, c, s: t_wave(torch, r * c, s, dt).reshape(r, c) * 0.02,
        lambda n: torch.ones(n, dtype=getattr(torch, dt), device="cuda"),
    )
    x = t_wave(torch, b * t * d, 0.001, dt).reshape(b, t, d)

    def rms(y, g):
        yf = y.float()
        return (yf * torch.rsqrt(yf.pow(2).mean(-1, keepdim=True) + 1.0e-5)).to(y.dtype) * g

    def split(y):
        return y.reshape(b, t, heads, hd).transpose(1, 2)

    @torch.no_grad()
    def forward():
        wq, wk, wv, wo, w1, w2, w3, g1, g2 = ps
        h = rms(x, g1)
        att = F.scaled_dot_product_attention(split(h @ wq), split(h @ wk), split(h @ wv), is_causal=True)
        y = x + att.transpose(1, 2).reshape(b, t, d) @ wo
        h = rms(y, g2)
        gate = h @ w1
        return y + (F.silu(gate) * (h @ w3)) @ w2

    return synced(torch, forward)


WORKLOADS = {
    "mlx": {
        "dispatch_build": mlx_dispatch_build,
        "dispatch_eval": mlx_dispatch_eval,
        "round_trip": mlx_round_trip,
        "matmul": mlx_matmul,
        "elementwise": mlx_elementwise,
        "sum": mlx_sum,
        "softmax": mlx_softmax,
        "mlp": mlx_mlp,
        "sdpa": mlx_sdpa,
        "add": mlx_add,
        "block": mlx_block,
        "to_binary": mlx_to_binary,
        "from_binary": mlx_from_binary,
        "from_binary_slices": mlx_from_binary_slices,
        "xor_step": mlx_xor_step,
        "random_uniform": mlx_random_uniform,
        "scalar_read_each": mlx_scalar_read_each,
        "jit_call": mlx_jit_call,
    },
    "numpy": {
        "round_trip": np_round_trip,
        "matmul": np_matmul,
        "elementwise": np_elementwise,
        "sum": np_sum,
        "softmax": np_softmax,
        "mlp": np_mlp,
        "sdpa": np_sdpa,
        "memcpy": np_memcpy,
        "xor_step": np_xor_step,
        "scalar_read_each": np_scalar_read_each,
    },
    "torch": {
        "matmul": torch_matmul,
        "add": torch_add,
        "sdpa": torch_sdpa,
        "block": torch_block,
    },
}


def describe():
    info = {"python": sys.version.split()[0], "numpy": np.__version__, "device": DEVICE}
    if mx is not None:
        info["mlx"] = mx.__version__
        import mlx

        lib = os.path.join(list(mlx.__path__)[0], "lib", "libmlx.so")
        info["libmlx"] = os.path.realpath(lib) if os.path.exists(lib) else "not found"
    else:
        info["mlx"] = "unavailable"
    if DEVICE == "gpu":
        try:
            import torch

            info["torch"] = torch.__version__ + (" cuda" if torch.cuda.is_available() else " no-cuda")
        except Exception:
            info["torch"] = "unavailable"
    info["ld_preload"] = os.environ.get("LD_PRELOAD", "") or "none"
    return " ".join(f"{k}={str(v).replace(' ', '_')}" for k, v in info.items())


def main():
    if mx is not None and DEVICE == "gpu":
        mx.set_default_device(mx.gpu)
    out = sys.stdout
    out.write("ready " + describe() + "\n")
    out.flush()
    runs = {}
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
            op = cmd["cmd"]
            if op == "quit":
                return
            elif op == "setup":
                impl = cmd["impl"]
                if impl == "mlx" and mx is None:
                    raise Skip(f"mlx does not import: {MLX_ERROR}")
                build = WORKLOADS[impl].get(cmd["workload"])
                if build is None:
                    raise Skip(f"no {impl} version of {cmd['workload']}")
                fn = build(cmd["params"])
                fn()  # warm-up: first-call costs stay out of the figures
                runs[cmd["key"]] = fn
                reply = "ok"
            elif op == "run":
                fn = runs[cmd["key"]]
                n = int(cmd["inner"])
                t0 = time.perf_counter_ns()
                for _ in range(n):
                    fn()
                reply = f"ok {time.perf_counter_ns() - t0}"
            elif op == "drop":
                runs.pop(cmd["key"], None)
                reply = "ok"
            else:
                reply = f"error unknown command {op}"
        except Skip as e:
            reply = f"skip {e}"
        except Exception as e:
            msg = f"{type(e).__name__}: {e}".replace("\n", " ")
            traceback.print_exc(file=sys.stderr)
            reply = f"error {msg}"
        out.write(reply + "\n")
        out.flush()


if __name__ == "__main__":
    main()
