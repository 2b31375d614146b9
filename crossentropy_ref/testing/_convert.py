"""Hand a case to a kernel as numpy arrays, torch tensors or JAX arrays, and read back its result.

Every value of a case is representable in the kernel's format (float32, float16, bfloat16), so
the conversions are exact: numpy arrays go to torch through float32, which holds the three
formats, and to JAX directly (``ml_dtypes.bfloat16`` is JAX's own bfloat16). Torch and JAX are
imported only when asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

INPUTS = ("numpy", "torch", "jax")


def check_inputs(inputs: object) -> str:
    if not isinstance(inputs, str):
        raise TypeError(f"`inputs` must be one of {INPUTS}; got {type(inputs).__name__} {inputs!r}")
    if inputs not in INPUTS:
        raise ValueError(f"`inputs` must be one of {INPUTS}; got {inputs!r}")
    return inputs


def check_grad(grad: object, inputs: str) -> bool | str:
    if grad is not False and grad is not True and grad != "autograd":
        raise (TypeError if not isinstance(grad, (bool, str)) else ValueError)(
            f"`grad` must be False (judge the loss fn returns), True (fn returns the gradient) "
            f"or 'autograd' (differentiate the loss fn returns); got {grad!r}"
        )
    if grad == "autograd" and inputs == "numpy":
        raise ValueError(
            "`grad='autograd'` needs `inputs='torch'` or `inputs='jax'`, whose autograd differentiates "
            "the loss fn returns; got inputs='numpy' (return the gradient and pass grad=True instead)"
        )
    return grad


def _module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ImportError(f"`inputs='{name.split('.')[0]}'` needs {name.split('.')[0]} installed") from None


def framework_dtype(inputs: str, name: str):
    """The torch or JAX dtype of the format `name`."""
    if inputs == "torch":
        return getattr(_module("torch"), name)
    return getattr(_module("jax.numpy"), name)


def to_framework(a: np.ndarray, inputs: str, name: str):
    """`a` (numpy, of format `name`, or integer class indices) as the kernel's array type."""
    if inputs == "numpy":
        return a.copy()
    if inputs == "torch":
        torch = _module("torch")
        if a.dtype.kind in "iu":
            return torch.from_numpy(a.astype(np.int64))
        return torch.from_numpy(a.astype(np.float32)).to(framework_dtype("torch", name))
    jnp = _module("jax.numpy")
    if a.dtype.kind in "iu":
        return jnp.asarray(a.astype(np.int32))  # JAX's default integers are 32-bit
    return jnp.asarray(a)


def to_numpy(out: Any) -> np.ndarray:
    """A kernel's result as a numpy array in its own format: torch tensors from any device (a
    bfloat16 tensor as ``ml_dtypes.bfloat16``, bit for bit); JAX arrays and the rest through
    numpy.asarray."""
    if hasattr(out, "detach") and hasattr(out, "double"):
        t = out.detach().cpu().contiguous()
        if str(t.dtype) == "torch.bfloat16":
            import torch

            from ._ulp import numpy_dtype

            return t.view(torch.int16).numpy().view(numpy_dtype("bfloat16"))
        if t.dtype.is_floating_point and str(t.dtype) not in ("torch.float16", "torch.float32", "torch.float64"):
            t = t.double()  # other float formats (float8, ...): exactly through float64
        return t.numpy()
    return np.asarray(out)


def make_runner(fn: Callable[..., Any], inputs: str, name: str, grad: bool | str) -> Callable[..., Any]:
    """run(logits, target, kwargs) for one case (numpy arrays in format `name`): what is judged,
    `fn`'s result or, for ``grad='autograd'``, the gradient of its result in the logits.

    The autograd cotangent is ones: for reduction='none', the gradient of the sum of the losses.
    A jitted JAX `fn` (one with ``.lower``) is differentiated under ``jax.jit`` too, as a
    training step does: one compilation per shape for the forward and backward passes together.
    """

    def convert(logits, target, kwargs):
        args = (to_framework(logits, inputs, name), to_framework(target, inputs, name))
        kw = {k: (to_framework(v, inputs, name) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
        return args, kw

    if grad != "autograd":

        def run(logits, target, kwargs):
            args, kw = convert(logits, target, kwargs)
            return fn(*args, **kw)

        return run
    if inputs == "torch":
        torch = _module("torch")

        def run(logits, target, kwargs):
            (z, t), kw = convert(logits, target, kwargs)
            z.requires_grad_(True)
            out = fn(z, t, **kw)
            out.backward(torch.ones_like(out))
            if z.grad is None:
                raise RuntimeError("the loss fn returned does not depend on its `logits` argument")
            return z.grad

        return run
    jax = _module("jax")
    jnp = _module("jax.numpy")

    def vjp(z, t, weight, static):
        kw = dict(static) if weight is None else dict(static, weight=weight)
        out, back = jax.vjp(lambda x: fn(x, t, **kw), z)
        return back(jnp.ones_like(out))[0]

    vjp_run = jax.jit(vjp, static_argnums=3) if hasattr(fn, "lower") else vjp

    def run(logits, target, kwargs):
        (z, t), kw = convert(logits, target, kwargs)
        weight = kw.pop("weight", None)
        return vjp_run(z, t, weight, tuple(sorted(kw.items())))

    return run
