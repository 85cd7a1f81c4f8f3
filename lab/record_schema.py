"""What a run record holds, as a JSON Schema (jsonschema): every field the study reads, with its type, checked once
when a record is read, so that a damaged or hand-edited file is one line naming it instead of a traceback later."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from fashion_mnist import CLASS_NAMES
from likelihoods import LIKELIHOODS
from models import FAMILIES

DEEPEST = 8  # a record nests 4 levels (eval.samplers.prior.fd); a file nested deeper is not one
NUMBER, COUNT = {"type": "number"}, {"type": "integer", "minimum": 0}
POSITIVE = {"type": "integer", "minimum": 1}
PER_CLASS = {
    "type": "object",
    "properties": dict.fromkeys(CLASS_NAMES, NUMBER),
    "required": list(CLASS_NAMES),
    "additionalProperties": False,
}


def settings(required: dict[str, Any]) -> dict[str, Any]:
    """A flat object of settings: `required` ones, the others scalars or tuples of integers (as 512x256)."""
    scalar_or_ints = {"anyOf": [{"type": ["null", "boolean", "number", "string"]}, {"type": "array", "items": COUNT}]}
    return {
        "type": "object",
        "properties": required,
        "required": list(required),
        "additionalProperties": scalar_or_ints,
    }


def qualities(*names: str) -> dict[str, Any]:
    """Named sets of numbers (samplers, sanity rows): each an object of numbers, `names` required."""
    numbers = {"type": "object", "additionalProperties": NUMBER}
    return {"type": "object", "required": list(names), "additionalProperties": numbers}


CLASSIFIED = {  # what a dataset with a classifier adds (Fashion-MNIST: quality.py)
    "recon_accuracy": NUMBER,
    "mse_per_class": PER_CLASS,
    "recon_accuracy_per_class": PER_CLASS,
    "samplers": qualities("prior", "aggregate", "class"),
    "sanity": qualities("real", "one_class", "blurred", "noise"),
    "sanity_recon": qualities("real", "one_class"),
}
SCORES = ("mig", "factor_vae", "dci_disentanglement", "dci_completeness", "dci_informativeness")
PER_FACTOR = ("mig_per_factor", "dci_informativeness_per_factor")  # in the order of factor_names
DISENTANGLEMENT = {  # what a dataset with known factors adds (shapes: disentanglement.py)
    "type": "object",
    "properties": {
        **dict.fromkeys(SCORES, NUMBER),
        "factor_names": {"type": "array", "items": {"type": "string"}},
        **dict.fromkeys(PER_FACTOR, {"type": "array", "items": NUMBER}),
    },
    "required": [*SCORES, "factor_names", *PER_FACTOR],
}
EVAL = {
    "type": "object",
    "properties": {
        "epoch": POSITIVE,
        "config": settings({}),
        "beta": NUMBER,
        "elbo": {"type": "object", "required": ["recon", "kl", "total"], "additionalProperties": NUMBER},
        **dict.fromkeys(("loss", "iwae_nll", "nll", "iwae_elbo", "knn_accuracy", "mse"), NUMBER),
        "nll_normalised": {"type": "boolean"},
        "active_units": COUNT,
        "parameters": COUNT,
        "kl_per_dim": {"type": "array", "items": NUMBER},
        "mse_per_class": {"type": "object", "additionalProperties": {"type": ["number", "null"]}},
        **dict.fromkeys(("k", "iwae_images", "samples", "test_images", "train_images"), POSITIVE),
        "eval_limit": {"type": ["integer", "null"]},
        "classifier_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "disentanglement": DISENTANGLEMENT,
    },
    # with known factors, the disentanglement scores; else (Fashion-MNIST) the classifier's measures
    "if": {"required": ["disentanglement"]},
    "else": {"properties": CLASSIFIED, "required": list(CLASSIFIED)},
}
# required: all the study reads (older records lack classifier_sha256: the committed weights; config: cross-checked)
EVAL["required"] = [
    name for name in EVAL["properties"] if name not in ("classifier_sha256", "config", "disentanglement")
]
RECORD = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "config": settings(
            {
                "model": {"enum": list(FAMILIES)},
                "likelihood": {"enum": list(LIKELIHOODS)},
                "latent_dim": POSITIVE,
                "beta": NUMBER,
                "seed": COUNT,
                "epochs": POSITIVE,
                "train_limit": {"type": ["integer", "null"]},
            }
        ),
        "parameters": COUNT,
        "epochs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["test"],
                "properties": {"test": {"type": "object", "required": ["recon"], "properties": {"recon": NUMBER}}},
            },
        },
        "seconds": NUMBER,
        "eval": EVAL,
        "machine": {"type": "object"},
    },
    "required": ["name", "config", "parameters", "epochs", "eval"],
}
VALIDATOR = Draft202012Validator(RECORD)
KINDS = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "number": float, "null": None}
ARTICLES = {"object": "an object", "array": "an array", "integer": "an integer", "null": "null"}


def depth_and_numbers(value: Any) -> tuple[int, bool]:
    """How deep `value` nests (its containers), and whether every number in it is finite and within 64 bits;
    without recursion (a file may nest thousands deep), stopping below DEEPEST."""
    deepest, ok, stack = 0, True, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth + 1)
            if deepest > DEEPEST:
                break
            stack += [(v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)]
        elif isinstance(item, float):
            ok = ok and abs(item) < float("inf")
        elif isinstance(item, int) and not isinstance(item, bool):
            ok = ok and abs(item) < 2**63
    return deepest, ok


def said(kind: str) -> str:  # "an object", "a string"
    return ARTICLES.get(kind, f"a {kind}")


def problem(record: Any) -> str | None:
    """Why `record` is not a run record, in a few words (where in it, and what is wrong), or None."""
    deepest, ok = depth_and_numbers(record)
    if deepest > DEEPEST:
        return f"nested deeper than {DEEPEST} levels (a run record nests 4)"
    if not ok:
        return "holds NaN, infinite or out-of-range numbers"
    error = best_match(VALIDATOR.iter_errors(record))
    if error is None:
        return None
    if error.validator == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        kind = next((name for name, cls in KINDS.items() if type(error.instance) is cls), "null")
        what = f"{said(kind)}, not {' or '.join(map(said, wanted))}"
    else:
        what = error.message if len(error.message) <= 100 else f"{error.message[:97]}..."
    return f"not a run record ({error.json_path}: {what})"
