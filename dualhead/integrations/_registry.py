"""Registration of a drop-in class in an OpenMMLab library's TASK_UTILS registry."""

from __future__ import annotations

import importlib


def register_task_util(registry_module: str, name: str, cls) -> bool:
    """Adds cls as `name` to registry_module's TASK_UTILS (e.g. "mmdet.registry") when that
    library is importable; returns whether it is registered."""
    try:
        task_utils = importlib.import_module(registry_module).TASK_UTILS
    except ImportError:
        return False
    if name not in task_utils.module_dict:
        task_utils.register_module(name=name, module=cls)
    return True
