"""A registered model as a STAC Item with the Machine Learning Model (MLM) extension: its
input bands, normalisation, window, output classes and framework, built with ``stac-model``;
and the contract ``tessera predict`` takes back from such an Item."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tessera.models.descriptor import ModelDescriptor
from tessera.tasks.base.files import atomic_write_json
from tessera.tasks.base.outputs import check_output_file

MLM_SUFFIX = "_mlm.json"
DESCRIPTOR_KEY = "tessera:descriptor"  # the whole descriptor, beside the MLM fields
_TASKS = {"class_logits": "semantic-segmentation", "latent_mean": "similarity-search"}


def mlm_path(record: Path) -> Path:
    """``<experiment>_mlm.json`` beside the registry record ``<experiment>.json``."""
    return record.with_name(record.stem + MLM_SUFFIX)


def is_mlm_item(path: Path) -> bool:
    """An MLM Item written by ``tessera register``."""
    try:
        data = json.loads(path.read_text())
        return DESCRIPTOR_KEY in data.get("properties", {})
    except (OSError, ValueError, AttributeError):
        return False


def mlm_properties(d: ModelDescriptor, parameters: int | None) -> dict[str, Any]:
    """The ``mlm:*`` properties of a model, validated by stac-model's schema."""
    import torch
    from stac_model.input import InputStructure, ModelInput
    from stac_model.output import MLMClassification, ModelOutput, ModelResult
    from stac_model.schema import MLModelProperties

    per_image = d.normalisation.startswith("image_")
    scaling = None
    if not per_image:  # (x - shift) / scale, per band
        pairs = zip(d.shift, d.scale, strict=True)
        scaling = [{"type": "z-score", "mean": m, "stddev": s} for m, s in pairs]
    model_input = ModelInput(
        name=f"{d.source} windows",
        bands=list(d.bands),
        input=InputStructure(
            shape=[-1, len(d.bands), d.window, d.window],
            dim_order=["batch", "bands", "height", "width"],
            data_type="float32",
        ),
        value_scaling=scaling,
        pre_processing_function=(
            {"format": "tessera-normalisation", "expression": d.normalisation}
            if per_image
            else None
        ),
    )
    task = _TASKS.get(d.output, "similarity-search")
    if d.output == "class_logits":
        result = ModelResult(shape=[-1, len(d.class_names), d.window, d.window],
                             dim_order=["batch", "channel", "height", "width"],
                             data_type="float32")  # fmt: skip
        classes = [MLMClassification(value=i, name=n) for i, n in enumerate(d.class_names)]
    else:
        result = ModelResult(shape=[-1, -1], dim_order=["batch", "embedding"], data_type="float32")
        classes = []
    output = ModelOutput(name=d.output, tasks={task}, classes=classes, result=result)
    props = MLModelProperties(
        name=d.experiment,
        architecture=d.model_type,
        tasks={task},
        framework="pytorch",
        framework_version=torch.__version__.split("+")[0],
        accelerator="cpu",
        accelerator_constrained=False,
        total_parameters=parameters,
        pretrained=False,
        input=[model_input],
        output=[output],
    )
    return dict(props.model_dump(by_alias=True, exclude_none=True, mode="json"))


def mlm_item(d: ModelDescriptor, record: dict[str, Any], parameters: int | None) -> dict[str, Any]:
    """The STAC Item (a dict) of the registered version a registry ``record`` names."""
    from stac_model.schema import SCHEMA_URI

    properties = {
        "datetime": None,
        "start_datetime": "1900-01-01T00:00:00Z",
        "end_datetime": "9999-12-31T23:59:59Z",
        "description": f"Tessera {d.model_type} of experiment {d.experiment}, "
        f"registered as {record['name']} v{record['version']} ({record.get('alias', '')})",
        **mlm_properties(d, parameters),
        DESCRIPTOR_KEY: json.loads(d.to_bytes()),
        "tessera:model_uri": record["model_uri"],
    }
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [SCHEMA_URI],
        "id": f"{record['name']}-v{record['version']}",
        "geometry": None,
        "properties": properties,
        "links": [],
        "assets": {
            "model": {
                "href": record["model_uri"],
                "title": f"{record['name']} v{record['version']} in the MLflow registry",
                "type": "application/octet-stream; application=pytorch",
                "roles": ["mlm:model", "mlm:weights", "data"],
                "mlm:artifact_type": "mlflow.pytorch",
            }
        },
    }


def write_mlm_item(record_path: Path, d: ModelDescriptor, record: dict[str, Any],
                   parameters: int | None) -> Path:  # fmt: skip
    """Write the MLM Item beside the registry record (replacing only an earlier one)."""
    path = check_output_file(mlm_path(record_path), is_mlm_item, "Tessera MLM Item")
    atomic_write_json(path, mlm_item(d, record, parameters))
    return path


def read_contract(path: Path) -> tuple[str, dict[str, Any]]:
    """The model URI of an MLM Item's model asset and the contract it states: bands, value
    scaling, window and class names (one line for a file that is not such an Item)."""
    try:
        item = json.loads(path.read_text())
        props = item["properties"]
        href = item["assets"]["model"]["href"]
        model_input = props["mlm:input"][0]
        output = props["mlm:output"][0]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"{path}: not an MLM Item with a model asset ({exc})") from None
    contract = {
        "bands": [b if isinstance(b, str) else b["name"] for b in model_input["bands"]],
        "window": int(model_input["input"]["shape"][-1]),
        "scaling": model_input.get("value_scaling"),
        "classes": [c["name"] for c in output.get("classification:classes", [])],
    }
    return href, contract


def with_contract(d: ModelDescriptor, contract: dict[str, Any], where: str) -> ModelDescriptor:
    """``d`` with the bands, normalisation values, window and class names an MLM Item states;
    a contract the network cannot honour (another band or class count) is one line."""
    bands, classes, scaling = contract["bands"], contract["classes"], contract["scaling"]
    if len(bands) != len(d.bands):
        raise ValueError(f"{where}: {len(bands)} bands, but the model reads {len(d.bands)}")
    if classes and len(classes) != len(d.class_names):
        raise ValueError(
            f"{where}: {len(classes)} classes, but the model gives {len(d.class_names)}"
        )
    update: dict[str, Any] = {"bands": bands, "window": contract["window"]}
    if classes:
        update["class_names"] = classes
    if scaling:
        if len(scaling) != len(bands) or any(s.get("type") != "z-score" for s in scaling):
            raise ValueError(f"{where}: value scaling other than one z-score per band")
        update["shift"] = [float(s["mean"]) for s in scaling]
        update["scale"] = [float(s["stddev"]) for s in scaling]
    return d.model_copy(update=update)
