"""The DeploymentEmbedding API: types, fixed names, the model catalog and the generated CRD.

This package imports nothing else of embedding_operator, so every other layer may depend on it.
"""

from embedding_operator.api.catalog import MODELS, ModelInfo, OutputDtype, get_model
from embedding_operator.api.status import ConditionType, ExitCode, Phase, Reason
from embedding_operator.api.types import (
    Condition,
    DeploymentEmbedding,
    DeploymentEmbeddingSpec,
    DeploymentEmbeddingStatus,
    Result,
)

__all__ = [
    "MODELS",
    "Condition",
    "ConditionType",
    "DeploymentEmbedding",
    "DeploymentEmbeddingSpec",
    "DeploymentEmbeddingStatus",
    "ExitCode",
    "ModelInfo",
    "OutputDtype",
    "Phase",
    "Reason",
    "Result",
    "get_model",
]
