"""What the server trains and ships: the ModelSpec, the taxonomy, the weights and the LiteRT file.

The taxonomy of a run (:func:`run_taxonomy`): the one the caller passes, else ``taxonomy-file``
(a JSON file, or ``builtin:topics`` / ``builtin:browsing`` / ``builtin:synthetic``), else the synthetic
vocabulary (the simulations' default; a deployment app names ``builtin:topics``, see :mod:`vane.server.deploy`). When
``taxonomy-version`` is set the taxonomy must have that content hash. The run logs which one it uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from vane.server.config import ServerSettings, default_taxonomy, model_version_of
from vane.shared.errors import ConfigError, TaxonomyError
from vane.shared.spec import ModelSpec
from vane.shared.taxonomy import Taxonomy
from vane.shared.vocabularies import describe_taxonomy, resolve_taxonomy
from vane.shared.weights import Weights

logger = logging.getLogger("vane.server")


def run_taxonomy(settings: ServerSettings, taxonomy: Taxonomy | None = None) -> Taxonomy:
    """The taxonomy a run trains for (see the module docstring).

    Raises
    ------
    TaxonomyError
        When ``taxonomy-file`` cannot be read, or the taxonomy's hash is not ``taxonomy-version``
        (the message names both).
    """
    if taxonomy is None:
        taxonomy = resolve_taxonomy(settings.taxonomy_file) if settings.taxonomy_file else default_taxonomy()
    if settings.taxonomy_version and settings.taxonomy_version != taxonomy.version:
        raise TaxonomyError(f"run_config taxonomy-version is {settings.taxonomy_version!r} but the run's taxonomy "
                            f"({settings.taxonomy_file or 'the default'}) has version {taxonomy.version}")
    logger.info("taxonomy: %s", describe_taxonomy(taxonomy))
    return taxonomy


@dataclass
class ModelBundle:
    """What the server trains: the spec, vocabulary, initial weights and the LiteRT file."""

    spec: ModelSpec
    taxonomy: Taxonomy
    weights: Weights
    blob: bytes

    @property
    def version(self) -> str:
        """The model version clients install (:func:`vane.server.config.model_version_of`)."""
        return model_version_of(self.spec, self.taxonomy)


def build_bundle(spec: ModelSpec | None, taxonomy: Taxonomy | None, blob: bytes | None = None) -> ModelBundle:
    """Initial weights and the training export for ``spec`` (built from ``taxonomy`` when None).

    Parameters
    ----------
    spec : ModelSpec or None
        None means ``ModelSpec(num_categories=len(taxonomy))``.
    taxonomy : Taxonomy or None
        None means :func:`vane.server.config.default_taxonomy`.
    blob : bytes, optional
        A training export of ``spec``, to skip the conversion.

    Raises
    ------
    ConfigError
        When the spec's category count does not match the taxonomy.
    """
    from vane.server.model import build_model, export_training_model  # TensorFlow: only when a model is built

    taxonomy = taxonomy or default_taxonomy()
    spec = spec or ModelSpec(num_categories=len(taxonomy))
    if spec.num_categories != len(taxonomy):
        raise ConfigError(f"ModelSpec.num_categories is {spec.num_categories} but the taxonomy has {len(taxonomy)}")
    model = build_model(spec)
    blob = blob if blob is not None else export_training_model(model)
    return ModelBundle(spec, taxonomy, model.weights(), blob)
