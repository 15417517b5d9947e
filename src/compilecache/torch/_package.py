"""AOT packages: export a module, compile it with AOTInductor, load it with torch's C++ loader.

Compiling (``compile_package``) imports ``torch._inductor``; loading (``load_runner``) does
not: the package is opened by ``torch._C._aoti.AOTIModelPackageLoader``, and the live module's
parameters and buffers are bound into it (packages are built without their weights), so a
changed weight is seen by the next call exactly as in eager mode.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..dispatch import Specialization
from ._structures import InputUnsupported, check_inputs, dims_by_identity, dynamic_shapes

#: Inductor options every package is built with: weights outside the shared object (bound
#: live at load), and no small tensor inlined into the generated code as a literal (Inductor
#: inlines small constants by default, which would freeze e.g. a small bias).
PACKAGE_OPTIONS: dict[str, Any] = {
    "aot_inductor.package_constants_in_so": False,
    "always_keep_tensor_constants": True,
}


class ExportUnsupported(Exception):
    """This call cannot be compiled ahead of time; ``reason`` says why in a few words.
    ``permanent``: the cause is the code, not this call's shapes (no specialization of the
    model would do better)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


#: Exceptions of torch.export that come from the code itself (data-dependent control flow,
#: unsupported constructs), not from the call's inputs: checked by name, so that their
#: modules need not be imported to test.
_CODE_ERRORS = frozenset(
    {
        "GuardOnDataDependentSymNode",
        "DataDependentOutputException",
        "DynamicOutputShapeException",
        "UserError",
        "Unsupported",
        "UnsupportedOperatorException",
    }
)


def export_program(
    module: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    spec: Specialization,
    *,
    strict: bool = False,
) -> tuple[Any, dict[str, torch.Tensor]]:
    """``torch.export.export`` of ``module`` for this call, the dims ``spec`` marks dynamic
    exported as dynamic, and the tensors forward made (see :func:`check_program`). Raises
    :class:`ExportUnsupported` with export's reason."""
    try:
        check_inputs(args, kwargs, spec)
    except InputUnsupported as error:
        raise ExportUnsupported(error.reason) from None
    signature = inspect.signature(module.forward)
    try:
        signature.bind(*args, **kwargs)
    except TypeError as error:
        raise ExportUnsupported(f"the call does not fit forward's signature: {error}") from None
    signature = _explicit(signature, kwargs)
    bound = signature.bind(*args, **kwargs)
    dims = dims_by_identity(args, kwargs, spec)
    shapes: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        if signature.parameters[name].kind is inspect.Parameter.VAR_POSITIONAL:
            shapes[name] = tuple(dynamic_shapes(v, dims) for v in value)
        else:
            shapes[name] = dynamic_shapes(value, dims)
    try:
        with _forward_signature(module, signature), _marks_restored(args, kwargs):
            program = torch.export.export(
                module, args, kwargs, dynamic_shapes=shapes if dims else None, strict=strict
            )
    except Exception as error:
        permanent = any(kind.__name__ in _CODE_ERRORS for kind in type(error).__mro__)
        raise ExportUnsupported(
            f"torch.export failed: {_first_line(error)}", permanent=permanent and not spec.dynamic
        ) from error
    captured = check_program(program, module)
    return program, captured


def _explicit(signature: inspect.Signature, kwargs: dict[str, Any]) -> inspect.Signature:
    """``signature`` with the call's keyword arguments that ``**kwargs`` would take as
    keyword-only parameters of their own: torch.export cannot match dynamic shapes against
    a ``**kwargs`` holding non-tensor values (a ``return_dict=True`` passed to a transformers
    model: "Must provide a tree_name when there might be a mismatch"), so the module is
    exported with this signature instead (as transformers' own exporter does)."""
    parameters = list(signature.parameters.values())
    var_keyword = next((p for p in parameters if p.kind is p.VAR_KEYWORD), None)
    extra = [name for name in kwargs if name not in signature.parameters]
    if var_keyword is None or not extra:
        return signature
    kept = [p for p in parameters if p is not var_keyword]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in extra]
    return signature.replace(parameters=[*kept, *added])


@contextlib.contextmanager
def _marks_restored(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[None]:
    """While exporting: afterwards, the call's tensors carry the dynamo marks (``mark_dynamic``
    and its kin, ``_dynamo_*`` attributes) they had before. torch.export marks the dims it is
    given dynamic on the caller's tensors and leaves the marks there; after an export that
    failed, the fallback's torch.compile would read them as the user's and raise a
    ConstraintViolationError where the export's guess was wrong."""
    from torch.utils import _pytree as pytree

    tensors = [
        leaf for leaf in pytree.tree_leaves((args, kwargs)) if isinstance(leaf, torch.Tensor)
    ]
    before = [{name: value for name, value in vars(t).items() if "dynamo" in name} for t in tensors]
    try:
        yield
    finally:
        for tensor, marks in zip(tensors, before, strict=True):
            state = vars(tensor)
            for name in [name for name in state if "dynamo" in name]:
                if name not in marks:
                    del state[name]
            state.update(marks)


@contextlib.contextmanager
def _forward_signature(module: torch.nn.Module, signature: inspect.Signature) -> Iterator[None]:
    """While exporting: ``module.forward`` presents ``signature`` (the original runs)."""
    if signature == inspect.signature(module.forward):
        yield
        return
    original = module.forward
    own = module.__dict__.get("forward")  # an instance-level forward the user set, if any

    def forward(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **kwargs)

    forward.__signature__ = signature  # type: ignore[attr-defined]
    module.forward = forward
    try:
        yield
    finally:
        if own is None:
            del module.forward
        else:
            module.forward = own


def check_program(program: Any, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Before compiling: every tensor the package will need can be bound live from
    ``module`` or was made by forward itself, and no 0-dim buffer is updated in forward (a
    package reads those back wrongly). Raises :class:`ExportUnsupported` (permanent: the
    code's doing). Returns the tensors forward made (``torch.tensor([...])`` in its code,
    lifted by export as constants): the entry carries them, by value."""
    signature = program.graph_signature
    captured: dict[str, torch.Tensor] = {}
    for name in getattr(signature, "lifted_tensor_constants", ()):
        try:
            resolve_tensor(module, name)
        except ExportUnsupported as error:
            value = program.constants.get(name)
            if not isinstance(value, torch.Tensor) or _held_outside(value, program):
                raise ExportUnsupported(error.reason, permanent=True) from None
            captured[name] = value
    state = program.state_dict
    mutated = set(getattr(signature, "buffers_to_mutate", {}).values()) | _mutated_inputs(program)
    for name in sorted(mutated):
        buffer = state.get(name)
        if buffer is None:
            buffer = program.constants.get(name)
        if isinstance(buffer, torch.Tensor) and buffer.dim() == 0:
            raise ExportUnsupported(
                f"forward updates the 0-dim buffer {name!r} in place, which an AOT package "
                "does not read back",
                permanent=True,
            )
    return captured


def _held_outside(tensor: torch.Tensor, program: Any) -> bool:
    """Whether anything but the exported program (and export's own bookkeeping) holds
    ``tensor``: a global, a closure, a container, or some module's parameters, buffers or
    attributes. Then it is state that may change between calls, which a package cannot read
    live; a tensor that forward made is held only by the program. Conservative: a holder it
    cannot place counts as outside (the call then falls back instead of freezing a value).
    Looked up once per compile, not per call."""
    import gc
    import types

    owned = {id(program.constants), id(program.state_dict)}
    for module in program.graph_module.modules():
        owned.update((id(vars(module)), id(module._buffers), id(module._parameters)))
    for node in program.graph.nodes:
        fake = node.meta.get("val")
        if hasattr(fake, "__dict__"):
            owned.add(id(vars(fake)))
    for holder in gc.get_referrers(tensor):
        if id(holder) in owned or isinstance(holder, types.FrameType):
            continue
        if isinstance(holder, dict) and _only_exports_names(holder, tensor):
            continue
        return True
    return False


def _only_exports_names(holder: dict[Any, Any], tensor: torch.Tensor) -> bool:
    """Export keeps constants as ``_tensor_constant<n>`` attributes of a module of its own,
    and in memo dicts keyed by the tensor: neither is the user's state. (A loop, not a
    comprehension: a comprehension would hold ``tensor`` in a closure cell, which the caller
    would then find among the tensor's holders.)"""
    for name, value in holder.items():
        if value is tensor and not str(name).startswith("_tensor_constant"):
            return False
    return True


def _mutated_inputs(program: Any) -> set[str]:
    """The buffers an in-place operation in the graph writes to (export's training IR keeps
    ``add_`` and friends on the buffers' placeholders instead of listing the mutations)."""
    targets = {
        spec.arg.name: spec.target
        for spec in program.graph_signature.input_specs
        if spec.target is not None and hasattr(spec.arg, "name")
    }
    found = set()
    for node in program.graph.nodes:
        schema = getattr(node.target, "_schema", None)
        if node.op != "call_function" or schema is None or not schema.is_mutable:
            continue
        for argument, value in zip(schema.arguments, node.args, strict=False):
            written = argument.alias_info is not None and argument.alias_info.is_write
            if written and getattr(value, "op", None) == "placeholder" and value.name in targets:
                found.add(targets[value.name])
    return found


def constant_names(program: Any) -> dict[str, str]:
    """The package's names of the module's plain tensor attributes: AOTInductor numbers the
    lifted tensor constants (``_tensor_constant0``, ...) in the exported program's order."""
    lifted = list(getattr(program.graph_signature, "lifted_tensor_constants", ()))
    return {f"_tensor_constant{number}": name for number, name in enumerate(lifted)}


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def compile_package(program: Any, options: dict[str, Any] | None = None) -> bytes:
    """AOTInductor-compile an exported program into ``.pt2`` package bytes, without weights.
    Raises :class:`ExportUnsupported` with the compiler's reason."""
    import torch._inductor

    configs = {**PACKAGE_OPTIONS, **(options or {})}
    with tempfile.TemporaryDirectory(prefix="compilecache-aot-") as work:
        path = os.path.join(work, "model.pt2")
        try:
            with warnings.catch_warnings():
                # torch 2.13 deep-copies tree specs inside AOTInductor, which warns about its
                # own deprecated LeafSpec: nothing the caller can change.
                warnings.filterwarnings(
                    "ignore", r"`isinstance\(treespec, LeafSpec\)`", FutureWarning
                )
                torch._inductor.aoti_compile_and_package(
                    program, package_path=path, inductor_configs=configs
                )
        except Exception as error:
            raise ExportUnsupported(f"AOTInductor failed: {_first_line(error)}") from error
        with open(path, "rb") as file:
            return file.read()


def open_loader(package: bytes) -> Any:
    """torch's C++ package loader for ``package`` (bytes), on one thread's runner."""
    descriptor, path = tempfile.mkstemp(prefix="compilecache-", suffix=".pt2")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(package)
        # (path, model name, run single-threaded, number of runners, device index)
        return torch._C._aoti.AOTIModelPackageLoader(path, "model", False, 1, -1)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


def resolve_tensor(module: torch.nn.Module, fqn: str) -> tuple[dict[str, Any], str, Any]:
    """(the dict holding it, its name, the tensor) for the constant named ``fqn``."""
    *owners, name = fqn.split(".")
    owner: Any = module
    try:
        for step in owners:
            modules = getattr(owner, "_modules", None) or {}
            owner = modules[step] if step in modules else getattr(owner, step)
    except AttributeError:
        raise ExportUnsupported(
            f"the package needs a tensor {fqn!r} whose module is gone"
        ) from None
    for table in ("_parameters", "_buffers"):
        holder = getattr(owner, table, None)
        if holder is not None and name in holder and holder[name] is not None:
            return holder, name, holder[name]
    holder = getattr(owner, "__dict__", {})
    value = holder.get(name)
    if not isinstance(value, torch.Tensor):
        raise ExportUnsupported(
            f"the package needs a tensor {fqn!r} that the module does not hold (tensors "
            "read from globals cannot be bound live: make them parameters, buffers or inputs)"
        )
    return holder, name, value


Unflatten = Callable[[list[Any]], Any]


def int_outputs(program: Any) -> tuple[int, ...]:
    """The positions of the program's flat outputs that are symbolic ints (transformers'
    sliding-window cache returns its length, ``cumulative_length``, as one)."""
    from torch.fx.experimental.symbolic_shapes import is_concrete_int

    found = []
    for node in program.graph.nodes:
        if node.op != "output":
            continue
        for position, value in enumerate(node.args[0]):
            meta = getattr(value, "meta", {}).get("val")
            if isinstance(meta, torch.SymInt) and not is_concrete_int(meta):
                found.append(position)
    return tuple(found)


def output_builder(loader: Any, ints: tuple[int, ...] = ()) -> Unflatten:
    """Turn the runner's flat outputs back into forward's output structure; the outputs at
    ``ints`` (0-dim tensors from the runner) become Python ints, as eager returns them."""
    from torch.utils import _pytree as pytree

    spec = pytree.treespec_loads(loader.get_call_spec()[1])
    if ints:
        rebuild = _plain_builder(spec)
        return lambda flat: rebuild(_ints_restored(flat, ints))
    return _plain_builder(spec)


def _ints_restored(flat: list[Any], ints: tuple[int, ...]) -> list[Any]:
    for position in ints:
        flat[position] = int(flat[position])
    return flat


def _plain_builder(spec: Any) -> Unflatten:
    if spec.is_leaf():
        return _first
    if spec.type is tuple and all(child.is_leaf() for child in _children(spec)):
        return tuple
    from ._flat_plans import OutputPlan

    return OutputPlan(spec)


def _children(spec: Any) -> list[Any]:
    # torch 2.13 deprecates the attribute ``children_specs`` for the method ``children()``.
    children = getattr(spec, "children", None)
    if callable(children):
        return list(children())
    return list(spec.children_specs)


def _first(flat: list[Any]) -> Any:
    return flat[0]
