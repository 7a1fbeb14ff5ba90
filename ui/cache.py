"""Cached calls into the core. Models are cached as shared resources (never mutated: techniques copy),
reports as data keyed on model name + recipe JSON, with bounded size (sweeps: ui/sweeps.py); reports are also
shared with the room's other server processes through ui/disk_cache.py when serve.sh runs several. A report's
deployment on ONNX Runtime is measured once per configuration too: in a background job for the slider pages
(`deployment_status`, ui/deploy_jobs.py), in the asking script for `report`."""
from __future__ import annotations

import streamlit as st
from torch import nn

import compressor as cz
from compressor.deploy import export_graph, report_from_dict, with_deployment
from compressor import fidelity
from compressor.pipeline import RecipeLike, as_recipe
from ui import deploy_jobs, disk_cache, uploads
from ui.owned import forgettable
from ui.session import OWN_PREFIX


def recipe_key(recipe: RecipeLike) -> str:
    """The canonical JSON that identifies a recipe (a Recipe, a step or a list of steps) in caches: equal recipes,
    however they were written, get one key (`Recipe.canonical_json`)."""
    return as_recipe(recipe).canonical_json()


def sample(name: str) -> cz.Sample:
    """A sample by name, or one of this session's own models ("upload:<session id>:<hash>", ui/uploads.py):
    another session's name is refused before any cache is asked."""
    if name.startswith(OWN_PREFIX):
        uploads.check_owner(name)
        return _own(name)
    return _sample(name)


@st.cache_resource(show_spinner="Loading the model…")
def _sample(name: str) -> cz.Sample:
    return cz.load_sample(name)


@forgettable(st.cache_resource(max_entries=16, ttl=3600, show_spinner="Loading your model…"))  # goes with its session
def _own(name: str) -> cz.Sample:
    return uploads.load_own(name)


def is_embedding(name: str) -> bool:
    """True for a sample whose outputs are embeddings (scored by fidelity, not accuracy), e.g. minilm-l6."""
    return sample(name).data.kind == "embedding"


@forgettable(st.cache_resource(show_spinner="Embedding the held-out sentences with the uncompressed model (once per server)…"))
def reference(name: str) -> fidelity.Reference | None:
    """The uncompressed model's embeddings and topic centroids, computed once per server; None for classifiers."""
    s = sample(name)
    return fidelity.reference(s.model, s.data) if s.data.kind == "embedding" else None


@forgettable(st.cache_resource(max_entries=64, show_spinner="Compressing the model…"))  # shown after 0.5 s only
def stage(name: str, recipe_json: str, _before: nn.Module) -> nn.Module:
    """The model of a recipe, made by its last step from `_before`, the model of the steps before it (not part of
    the cache key: the recipe JSON names it)."""
    s = sample(name)
    recipe = cz.Recipe.from_json(recipe_json)
    if not recipe.steps:
        return cz.compress(s.model, recipe, s.data)
    return cz.compress(_before, recipe.steps[-1], s.data)  # a new model carrying the whole recipe


def compressed(name: str, recipe_json: str) -> nn.Module:
    """The compressed model (shared between sessions: read it, never change it).

    Built stage by stage, each stage's model cached under its recipe prefix, so every prefix of a recipe is
    computed once: the Pipeline page's stages are these same models. A loop, not recursion: a recipe of
    hundreds of steps must not reach Python's recursion limit.
    """
    return stage_models(name, recipe_json)[-1]


def stage_models(name: str, recipe_json: str) -> list[nn.Module]:
    """The model after each stage of a recipe: [no step (losslessly packed), after step 1, ..., after step n]."""
    steps = cz.Recipe.from_json(recipe_json).steps
    models = [stage(name, recipe_key(cz.Recipe()), None)]
    for i in range(1, len(steps) + 1):
        models.append(stage(name, recipe_key(steps[:i]), models[-1]))
    return models


@forgettable(st.cache_data(max_entries=512, show_spinner="Measuring fidelity or accuracy, file size and eager latency…"))
def measured(name: str, recipe_json: str, timed: bool = True) -> cz.Report:
    """The measured report of a recipe without its deployment: accuracy (or fidelity), exported file size, MACs and,
    when `timed`, eager PyTorch latency (timed once per configuration, then reused). Served by several processes,
    reports are shared on disk."""
    def measure() -> dict:
        s = sample(name)
        recipe = cz.Recipe.from_json(recipe_json)
        latency = cz.LatencyConfig() if timed else None
        return cz.evaluate(compressed(name, recipe_json), s.data, baseline=s.model, latency=latency,
                           recipe=recipe.to_dict(), reference=reference(name)).to_dict()

    return report_from_dict(disk_cache.fetch("report", (name, recipe_json, str(timed)), measure))


def deployment_job(name: str, recipe_json: str, report: cz.Report) -> deploy_jobs.Job:
    """The job that deploys a recipe's model on ONNX Runtime: deployed accuracy (or fidelity) and latency, timed
    alongside the fp32 baseline. The models are resolved here, in the asking script, so the job only computes."""
    s = sample(name)
    shipped = None if name.startswith(OWN_PREFIX) else name  # travels to the child as its name (loaded there)
    return deploy_jobs.Deploy(compressed(name, recipe_json), s.data, s.model, report.accuracy, reference(name), shipped)


def deployment_status(name: str, recipe_json: str, report: cz.Report) -> deploy_jobs.Status:
    """Where the recipe's deployment is (ui/deploy_jobs.py): ready, failed, or queued/running in the background
    (asked for here, once for every session; its job is built only when it must be queued)."""
    return deploy_jobs.jobs.request((name, recipe_json), lambda: deployment_job(name, recipe_json, report))


@forgettable(st.cache_data(max_entries=512, show_spinner="Measuring fidelity or accuracy, file size and eager latency, "
                          "then deploying on ONNX Runtime (export, deployed fidelity or accuracy, timing; tens of seconds "
                          "for minilm-l6)…"))
def report(name: str, recipe_json: str, timed: bool = True) -> cz.Report:
    """The measured report of a recipe; timed reports are also deployed on ONNX Runtime (integer kernels where the
    weights allow), now, in this script, so pages that show one number for one configuration (Overview, Export,
    the Trade-offs grid, Distillation) get the deployed latency next to eager PyTorch's. The slider pages show
    `measured` at once and let the deployment run in the background (`deployment_status`); both share one
    deployment per configuration."""
    core = measured(name, recipe_json, timed)
    if not timed:
        return core
    key = (name, recipe_json)
    return with_deployment(core, deploy_jobs.jobs.measure(key, deployment_job(name, recipe_json, core)))


@forgettable(st.cache_data(max_entries=64, show_spinner=False))
def onnx_file(name: str, recipe_json: str) -> bytes:
    """The deployed ONNX graph of a recipe (what ONNX Runtime ran for the report), as file bytes."""
    return export_graph(compressed(name, recipe_json), sample(name).data).SerializeToString()
