"""Methods, registered by name (the name is also the ``model=`` choice and the conf file name)."""

from __future__ import annotations

import importlib

from anomaly_kd.errors import UserError

# name -> "module:ClassName"; each module lives in its own folder under anomaly_kd/models/.
MODEL_REGISTRY: dict[str, str] = {
    "stfpm": "anomaly_kd.models.stfpm:STFPM",
    "stfpm_ensemble": "anomaly_kd.models.stfpm_ensemble:STFPMEnsemble",
    "simple_student": "anomaly_kd.models.simple_student:SimpleStudent",
    "reverse_distillation": "anomaly_kd.models.reverse_distillation:ReverseDistillation",
    "uninformed_students": "anomaly_kd.models.uninformed_students:UninformedStudents",
}


def available_models() -> list[str]:
    return sorted(MODEL_REGISTRY)


def get_model_class(name: str) -> type:
    if name not in MODEL_REGISTRY:
        raise UserError(f"Unknown model '{name}': choose one of {', '.join(available_models())}.")
    module, cls = MODEL_REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def model_name_of(cls: type) -> str | None:
    path = f"{cls.__module__.rsplit('.', 1)[0]}:{cls.__name__}"
    return next((n for n, p in MODEL_REGISTRY.items() if p == path), None)
