"""`/v1/models/{model}/validations`: Wallaroo-style named polars expressions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Response

from api.deps import existing_model, get_repo
from api.schemas import Validations
from stream.config.models import ModelConfig
from stream.config.validations import Validation, ValidationError
from stream.store.config import ConfigRepository

router = APIRouter(prefix="/v1/models/{model}/validations", tags=["validations"])

_EXAMPLES = {
    "single": {"value": {"name": "fraud", "expression": 'pl.col("out.dense_1").list.get(0) > 0.9'}},
    "several": {"value": {"too_low": 'pl.col("in.x") < 0', "too_high": 'pl.col("in.x") > 100'}},
}


def _parse(body: dict[str, Any]) -> list[Validation]:
    """`{"name": n, "expression": e}` (one) or `{name: expression, ...}` (several); all or nothing."""
    pairs = [(body["name"], body["expression"])] if set(body) == {"name", "expression"} else list(body.items())
    if not pairs:
        raise HTTPException(422, "no validations in the body")
    out = []
    for name, expression in pairs:
        if not isinstance(name, str) or not isinstance(expression, str):
            raise HTTPException(422, f"validation {str(name)[:100]!r}: name and expression must be strings")
        try:
            out.append(Validation.create(name, expression))
        except ValidationError as exc:
            raise HTTPException(422, f"validation {name[:100]!r}: {exc}") from None
    return out


@router.get("", response_model=Validations)
def list_validations(config: Annotated[ModelConfig, Depends(existing_model)],
                     repo: Annotated[ConfigRepository, Depends(get_repo)]) -> Validations:
    return Validations(model=config.name, validations=repo.get_validations(config.name).to_dict())


@router.put("", response_model=Validations, summary="Add or replace validations (same name replaces)")
def put_validations(config: Annotated[ModelConfig, Depends(existing_model)],
                    repo: Annotated[ConfigRepository, Depends(get_repo)],
                    body: Annotated[dict[str, Any], Body(openapi_examples=_EXAMPLES)]) -> Validations:
    for validation in _parse(body):
        repo.put_validation(config.name, validation)
    return Validations(model=config.name, validations=repo.get_validations(config.name).to_dict())


@router.delete("/{name}", status_code=204)
def delete_validation(config: Annotated[ModelConfig, Depends(existing_model)],
                      repo: Annotated[ConfigRepository, Depends(get_repo)],
                      name: Annotated[str, Path(max_length=200)]) -> Response:
    if not repo.delete_validation(config.name, name):
        raise HTTPException(404, f"model {config.name!r} has no validation {name[:100]!r}")
    return Response(status_code=204)
