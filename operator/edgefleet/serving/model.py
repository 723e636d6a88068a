"""The loaded ONNX model: checking its file, validating request inputs, running it.

numpy and onnxruntime are imported inside :meth:`LoadedModel.load`, never at
module import, so the package imports on a machine without them (the operator's
image builder only copies these files).

Validation is strict because every mistake must come back as a 400 with a message
a person can act on, never as a 500 from deep inside onnxruntime: every model input
must be given and no other, values must be numbers (or booleans for boolean
inputs) in a rectangular nested list whose shape matches the model's declared
shape (dynamic dimensions accept any size), integers must fit the input's type and
floats must stay finite once converted.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "InputError",
    "InputSpec",
    "LoadedModel",
    "ModelError",
    "ModelInfo",
    "OutputError",
    "file_sha256",
]

# onnxruntime type string -> (numpy dtype name, numpy kinds accepted from JSON)
_TYPES: dict[str, tuple[str, str]] = {
    "tensor(float)": ("float32", "iuf"),
    "tensor(double)": ("float64", "iuf"),
    "tensor(float16)": ("float16", "iuf"),
    "tensor(int64)": ("int64", "iu"),
    "tensor(int32)": ("int32", "iu"),
    "tensor(int16)": ("int16", "iu"),
    "tensor(int8)": ("int8", "iu"),
    "tensor(uint64)": ("uint64", "iu"),
    "tensor(uint32)": ("uint32", "iu"),
    "tensor(uint16)": ("uint16", "iu"),
    "tensor(uint8)": ("uint8", "iu"),
    "tensor(bool)": ("bool", "b"),
}


class ModelError(RuntimeError):
    """The model file is missing, corrupt, not the expected one, or not servable."""


class InputError(ValueError):
    """A predict request does not fit the model's inputs; the message says why."""


class OutputError(ValueError):
    """The model answered with values JSON cannot carry (NaN, infinity)."""


@dataclass(frozen=True)
class ModelInfo:
    """What the server reports about its model."""

    name: str
    version: str
    sha256: str

    def as_json(self) -> dict[str, str]:
        """The ``model`` object of responses."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


@dataclass(frozen=True)
class InputSpec:
    """One model input: name, numpy dtype and shape (``None`` for a dynamic dimension)."""

    name: str
    dtype: str
    kinds: str
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


def file_sha256(path: str) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _spec(arg: Any) -> InputSpec:
    if arg.type not in _TYPES:
        raise ModelError(
            f"model input {arg.name!r} has type {arg.type}, which this server cannot fill from JSON"
        )
    dtype, kinds = _TYPES[arg.type]
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (arg.shape or ()))
    return InputSpec(arg.name, dtype, kinds, shape)


class LoadedModel:
    """An onnxruntime session with the input specs it was built for."""

    def __init__(self, session: Any, inputs: tuple[InputSpec, ...], np: Any) -> None:
        self._session = session
        self.inputs = inputs
        self._np = np
        self.output_names: tuple[str, ...] = tuple(o.name for o in session.get_outputs())
        self.runtime: dict[str, str] = {}

    @classmethod
    def load(cls, path: str, *, expected_sha256: str, threads: int) -> tuple[LoadedModel, str]:
        """Check the file, build the session; return it with the file's sha256."""
        if not os.path.isfile(path):
            raise ModelError(f"model file {path} does not exist (set EDGEFLEET_MODEL_PATH)")
        sha = file_sha256(path)
        if expected_sha256 and sha != expected_sha256:
            raise ModelError(
                f"model file {path} has sha256 {sha}, expected {expected_sha256}: "
                "refusing to serve it"
            )
        try:
            import numpy as np
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - the image always has both
            raise ModelError(f"the serving runtime is incomplete: {exc}") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelError(f"onnxruntime cannot load {path}: {exc}") from exc
        inputs = tuple(_spec(arg) for arg in session.get_inputs())
        model = cls(session, inputs, np)
        model.runtime = {"onnxruntime": str(ort.__version__), "numpy": str(np.__version__)}
        return model, sha

    def warm_up(self) -> None:
        """Run once on zeros (dynamic dimensions set to 1) so the first request is not slow."""
        np = self._np
        feeds = {
            spec.name: np.zeros([1 if d is None else d for d in spec.shape], dtype=spec.dtype)
            for spec in self.inputs
        }
        try:
            self._session.run(None, feeds)
        except Exception as exc:
            raise ModelError(f"warm-up inference failed: {exc}") from exc

    def _array(self, spec: InputSpec, value: object) -> Any:
        np = self._np
        if not isinstance(value, list):
            raise InputError(
                f"input {spec.name!r} must be a nested list, got {type(value).__name__}"
            )
        try:
            raw = np.asarray(value)
        except ValueError as exc:
            raise InputError(
                f"input {spec.name!r} is not a rectangular nested list: {exc}"
            ) from None
        if raw.ndim != len(spec.shape) or any(
            d is not None and d != n for d, n in zip(spec.shape, raw.shape, strict=True)
        ):
            got = "[" + ", ".join(str(n) for n in raw.shape) + "]"
            raise InputError(
                f"input {spec.name!r} has shape {got}; the model wants {spec.describe()}"
            )
        if raw.size and raw.dtype.kind not in spec.kinds:
            if spec.dtype == "bool":
                wanted = "booleans"
            elif spec.kinds == "iu":
                wanted = f"integers that fit {spec.dtype}"
            else:
                wanted = f"finite numbers for {spec.dtype}"
            raise InputError(f"input {spec.name!r} must hold {wanted}; {spec.describe()}")
        if spec.kinds == "iu" and raw.size:
            info = np.iinfo(spec.dtype)
            if int(raw.min()) < info.min or int(raw.max()) > info.max:
                raise InputError(
                    f"input {spec.name!r} has values outside the range of {spec.dtype}"
                )
        with np.errstate(over="ignore", invalid="ignore"):
            array = raw.astype(spec.dtype)
        if array.dtype.kind == "f" and not bool(np.isfinite(array).all()):
            raise InputError(f"input {spec.name!r} has values too large for {spec.dtype}")
        return array

    def feeds(self, inputs: object) -> dict[str, Any]:
        """Validate the ``inputs`` object of a request into numpy arrays."""
        if not isinstance(inputs, Mapping):
            raise InputError('"inputs" must be an object mapping input names to nested lists')
        known = {spec.name for spec in self.inputs}
        unknown = sorted(str(k) for k in inputs if k not in known)
        missing = sorted(known - set(inputs))
        if unknown or missing:
            wanted = "; ".join(spec.describe() for spec in self.inputs)
            problems = []
            if unknown:
                problems.append(f"unknown inputs {unknown}")
            if missing:
                problems.append(f"missing inputs {missing}")
            raise InputError(f"{' and '.join(problems)}; the model takes {wanted}")
        return {spec.name: self._array(spec, inputs[spec.name]) for spec in self.inputs}

    def run(self, feeds: Mapping[str, Any]) -> tuple[dict[str, list[Any]], float]:
        """Run the model; return outputs as nested lists and the seconds it took."""
        start = time.perf_counter()
        try:
            results = self._session.run(None, dict(feeds))
        except Exception as exc:  # e.g. a dynamic dimension the graph cannot take
            raise InputError(f"the model rejected these inputs: {exc}") from exc
        elapsed = time.perf_counter() - start
        np = self._np
        outputs: dict[str, list[Any]] = {}
        for name, value in zip(self.output_names, results, strict=True):
            array = np.asarray(value)
            if array.dtype.kind in "fc" and not bool(np.isfinite(array).all()):
                raise OutputError(f"output {name!r} holds NaN or infinity, which JSON cannot carry")
            outputs[name] = array.tolist()
        return outputs, elapsed
