"""IIR filter design and the streaming SOS kernel without importing ``scipy.signal``.

``import scipy.signal`` pulls in most of SciPy (linalg, sparse, special, optimize...) and costs
the daemon about 75 MB of resident memory, for four filter designs made once at start-up and
one compiled loop. So the designs are done here in numpy (Butterworth by the bilinear
transform of the analog prototype, as in every DSP text; the RBJ-style notch of
``scipy.signal.iirnotch``), and the compiled ``_sosfilt`` kernel is loaded from SciPy's
extension file alone. tests/detect checks every design against ``scipy.signal`` to 1e-10.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

SosKernel = Callable[[np.ndarray, np.ndarray, np.ndarray], None]


def _load_kernel() -> SosKernel | None:
    """SciPy's compiled ``_sosfilt(sos, x, zi)`` (in place), without ``scipy.signal``'s package."""
    loaded = sys.modules.get("scipy.signal._sosfilt")
    if loaded is not None:
        return getattr(loaded, "_sosfilt", None)
    spec = importlib.util.find_spec("scipy")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "signal"
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = folder / f"_sosfilt{suffix}"
        if path.exists():
            try:
                loader = importlib.machinery.ExtensionFileLoader("scipy.signal._sosfilt", str(path))
                mod_spec = importlib.util.spec_from_file_location(
                    "scipy.signal._sosfilt", path, loader=loader
                )
                if mod_spec is None:
                    return None
                module = importlib.util.module_from_spec(mod_spec)
                loader.exec_module(module)
            except ImportError:
                return None
            return getattr(module, "_sosfilt", None)
    return None


SOSFILT_KERNEL: SosKernel | None = _load_kernel()


def sosfilt_inplace(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> None:
    """Filter ``x`` (float64, shape (1, n), C order) in place through ``sos``, carrying ``zi``
    (shape (1, sections, 2)). Uses SciPy's compiled kernel, else the public function."""
    if SOSFILT_KERNEL is not None:
        SOSFILT_KERNEL(sos, x, zi)
        return
    from scipy.signal import sosfilt  # pragma: no cover - only where the kernel file moved

    y, z = sosfilt(sos, x[0], zi=zi[0])
    x[0] = y
    zi[0] = z


def _bilinear(z: np.ndarray, p: np.ndarray, k: float, fs: float) -> tuple[np.ndarray, np.ndarray, float]:
    fs2 = 2.0 * fs
    degree = p.size - z.size
    zd = np.concatenate(((fs2 + z) / (fs2 - z), -np.ones(degree)))
    pd = (fs2 + p) / (fs2 - p)
    kd = k * float(np.real(np.prod(fs2 - z) / np.prod(fs2 - p)))
    return zd, pd, kd


def _pairs(roots: np.ndarray) -> list[np.ndarray]:
    """Conjugate pairs (upper-half root with its conjugate) and reals in twos, in input order."""
    cplx = [r for r in roots if r.imag > 1e-12]
    reals = sorted((float(r.real) for r in roots if abs(r.imag) <= 1e-12), reverse=True)
    out = [np.array([r, np.conj(r)]) for r in cplx]
    out += [np.array(reals[i : i + 2], dtype=complex) for i in range(0, len(reals), 2)]
    return out


def _zpk_to_sos(z: np.ndarray, p: np.ndarray, k: float) -> np.ndarray:
    """Second-order sections: each pole pair (the one nearest the unit circle last) with the
    zeros nearest to it; the gain on the first section."""
    pole_pairs = sorted(_pairs(p), key=lambda pr: float(np.abs(pr[0])))
    zeros = list(z)
    sos = np.zeros((len(pole_pairs), 6))
    for i, pp in enumerate(reversed(pole_pairs)):  # nearest the unit circle picks its zeros first
        chosen: list[complex] = []
        for _ in range(2):
            if not zeros:
                break
            j = int(np.argmin([abs(zz - pp[0]) for zz in zeros]))
            zc = zeros.pop(j)
            chosen.append(zc)
            if abs(zc.imag) > 1e-12:  # its conjugate goes with it
                jc = int(np.argmin([abs(zz - np.conj(zc)) for zz in zeros]))
                chosen.append(zeros.pop(jc))
                break
        b = np.real(np.poly(chosen)) if chosen else np.array([1.0])
        a = np.real(np.poly(pp))
        row = len(pole_pairs) - 1 - i
        sos[row, :3] = np.concatenate((np.zeros(3 - b.size), b)) if b.size < 3 else b
        sos[row, 3:] = a if a.size == 3 else np.concatenate((a, np.zeros(3 - a.size)))
    sos[0, :3] *= k
    return sos


def butter_sos(order: int, wn_hz: float | tuple[float, float], btype: str, fs: float) -> np.ndarray:
    """Digital Butterworth filter as second-order sections, like
    ``scipy.signal.butter(order, wn_hz, btype, fs=fs, output="sos")`` for btype ``lowpass``,
    ``highpass`` or ``bandpass`` (wn_hz a (low, high) pair). ValueError for bad arguments."""
    if order < 1:
        raise ValueError(f"filter order must be >= 1, got {order}")
    edges = np.atleast_1d(np.asarray(wn_hz, dtype=float))
    if not ((edges > 0).all() and (edges < fs / 2).all()):
        raise ValueError(f"cut-off frequencies must be between 0 and fs/2 = {fs / 2:g} Hz, got {wn_hz}")
    warped = 2.0 * fs * np.tan(np.pi * edges / fs)  # pre-warped analog edges, rad/s
    m = np.arange(-order + 1, order, 2)
    p = -np.exp(1j * np.pi * m / (2 * order))  # analog prototype poles, unit cut-off
    z = np.zeros(0, complex)
    k = 1.0
    if btype == "lowpass" and edges.size == 1:
        wo = float(warped[0])
        z, p, k = z * wo, p * wo, k * wo**order
    elif btype == "highpass" and edges.size == 1:
        wo = float(warped[0])
        k = k * float(np.real(1.0 / np.prod(-p)))
        z, p = np.zeros(order, complex), wo / p
    elif btype == "bandpass" and edges.size == 2:
        wo = math.sqrt(float(warped[0] * warped[1]))
        bw = float(warped[1] - warped[0])
        p_lp = p * bw / 2
        p = np.concatenate((p_lp + np.sqrt(p_lp**2 - wo**2), p_lp - np.sqrt(p_lp**2 - wo**2)))
        z = np.zeros(order, complex)
        k = k * bw**order
    else:
        raise ValueError(f"unsupported filter type {btype!r} with {edges.size} edge(s)")
    zd, pd, kd = _bilinear(z, p, k, fs)
    return _zpk_to_sos(zd, pd, kd)


def notch_sos(f0_hz: float, q: float, fs: float) -> np.ndarray:
    """Second-order IIR notch at ``f0_hz`` with quality ``q``, one section, like
    ``scipy.signal.tf2sos(*scipy.signal.iirnotch(f0_hz, q, fs=fs))``."""
    if not (0 < f0_hz < fs / 2) or q <= 0:
        raise ValueError(f"notch needs 0 < f0_hz < fs/2 and q > 0, got {f0_hz}, {q}")
    w0 = 2.0 * np.pi * f0_hz / fs
    bw = w0 / q
    beta = math.tan(bw / 2.0)  # gain at the band edges: -3 dB
    gain = 1.0 / (1.0 + beta)
    c = math.cos(w0)
    return np.array([[gain, -2.0 * gain * c, gain, 1.0, -2.0 * gain * c, 2.0 * gain - 1.0]])


def sosfilt_zi(sos: np.ndarray) -> np.ndarray:
    """Initial state of each section for a unit step's steady state (``scipy.signal.sosfilt_zi``)."""
    zi = np.empty((sos.shape[0], 2))
    scale = 1.0
    for s in range(sos.shape[0]):
        b = sos[s, :3] / sos[s, 3]
        a = sos[s, 3:] / sos[s, 3]
        i_minus_a = np.array([[1.0 + a[1], -1.0], [a[2], 1.0]])
        zi[s] = scale * np.linalg.solve(i_minus_a, b[1:] - a[1:] * b[0])
        scale *= float(b.sum() / a.sum())
    return zi
