"""`/v1/models`: model CRUD, tag search and `/v1/models/{model}/tags`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Response
from pydantic import ValidationError as PydanticValidationError

from api.deps import (
    ApiKey,
    existing_model,
    get_references,
    get_repo,
    model_access,
    pagination,
    require_admin,
    require_key,
)
from api.schemas import ModelBody, ModelCreate, ModelOut, ModelPage, Tags
from stream.config.models import ModelConfig
from stream.store.config import ConfigRepository
from stream.store.references import ReferenceStore

router = APIRouter(prefix="/v1/models", tags=["models"])


def _validated(data: dict[str, Any]) -> ModelConfig:
    """A ModelConfig or 422 naming the failing field and rule."""
    try:
        ModelCreate.model_validate(data)  # the API's own rules first (finite weights, no unknown fields)
        return ModelConfig.model_validate(data)
    except PydanticValidationError as exc:
        detail = [{"loc": ["body", *[str(x) for x in e["loc"]]], "path": ".".join(["body", *map(str, e["loc"])]),
                   "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise HTTPException(422, detail) from None


def _out(m: ModelConfig) -> ModelOut:
    return ModelOut.model_validate(m.model_dump())


@router.post("", status_code=201, response_model=ModelOut, summary="Create a model (admin)")
def create_model(body: ModelCreate, _: Annotated[ApiKey, Depends(require_admin)],
                 repo: Annotated[ConfigRepository, Depends(get_repo)], response: Response) -> ModelOut:
    config = _validated(body.model_dump())
    if repo.get_model(config.name) is not None:
        raise HTTPException(409, f"model {config.name!r} already exists")
    repo.put_model(config)
    response.headers["Location"] = f"/v1/models/{config.name}"
    return _out(config)


@router.get("", response_model=ModelPage, summary="List models (model keys see only their model)")
def list_models(key: Annotated[ApiKey, Depends(require_key)], repo: Annotated[ConfigRepository, Depends(get_repo)],
                paging: Annotated[tuple[int, int], Depends(pagination)],
                tag: Annotated[str | None, Query(max_length=512, description="`key` or `key:value`")] = None,
                ) -> ModelPage:
    page, page_size = paging
    models = [m for m in repo.list_models(tag) if key.allows(m.name)]
    items = models[(page - 1) * page_size: page * page_size]
    return ModelPage(items=[_out(m) for m in items], page=page, page_size=page_size, total=len(models))


@router.get("/{model}", response_model=ModelOut)
def get_model(config: Annotated[ModelConfig, Depends(existing_model)]) -> ModelOut:
    return _out(config)


@router.put("/{model}", response_model=ModelOut, summary="Replace a model's settings")
def replace_model(config: Annotated[ModelConfig, Depends(existing_model)], body: ModelBody,
                  repo: Annotated[ConfigRepository, Depends(get_repo)]) -> ModelOut:
    new = _validated({**body.model_dump(), "name": config.name})
    repo.put_model(new)
    return _out(new)


@router.patch("/{model}", response_model=ModelOut, summary="Change some of a model's settings")
def patch_model(config: Annotated[ModelConfig, Depends(existing_model)],
                repo: Annotated[ConfigRepository, Depends(get_repo)],
                body: Annotated[dict[str, Any], Body(description="fields of the model to change")]) -> ModelOut:
    if "name" in body and body["name"] != config.name:
        raise HTTPException(422, "a model's name cannot be changed")
    new = _validated({**config.model_dump(), **body})
    repo.put_model(new)
    return _out(new)


@router.delete("/{model}", status_code=204,
               summary="Delete a model, its configuration and its reference profiles (stored profiles stay)")
def delete_model(model: Annotated[str, Depends(model_access)],
                 repo: Annotated[ConfigRepository, Depends(get_repo)],
                 references: Annotated[ReferenceStore, Depends(get_references)]) -> Response:
    if not repo.delete_model(model):
        raise HTTPException(404, f"unknown model {model!r}")
    references.delete_all(model)  # a model created again under this name starts without baselines
    return Response(status_code=204)


@router.get("/{model}/tags", response_model=Tags)
def get_tags(config: Annotated[ModelConfig, Depends(existing_model)]) -> Tags:
    return Tags(tags=config.tags)


@router.put("/{model}/tags", response_model=Tags, summary="Replace a model's tags")
def put_tags(config: Annotated[ModelConfig, Depends(existing_model)], body: Tags,
             repo: Annotated[ConfigRepository, Depends(get_repo)]) -> Tags:
    for k, v in body.tags.items():
        if not k or len(k) > 256 or len(v) > 1024 or ":" in k:
            raise HTTPException(422, f"invalid tag {k[:100]!r}: keys are 1-256 characters without ':', "
                                     "values at most 1024 characters")
    new = _validated({**config.model_dump(), "tags": body.tags})
    repo.put_model(new)
    return Tags(tags=new.tags)
