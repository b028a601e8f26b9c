"""The model registry: registering, validating, activating, rolling back, aliases,
retirement, the canary share and the per-process cache of loaded versions."""

import json
from pathlib import Path

import pytest
import torch
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from safetensors import safe_open
from safetensors.torch import save_file

from captioning import inference, registry, selectors, services
from captioning.models import CaptionJob, ModelActivation, ModelAlias, ModelVersion

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTER_PATH = REPO_ROOT / "checkpoints" / "starter.safetensors"


def register(name: str = "flickr", path: Path = STARTER_PATH, **kwargs) -> ModelVersion:
    with open(path, "rb") as source:
        return registry.model_version_register(source=source, name=name, **kwargs)


def register_ready(name: str = "flickr", path: Path = STARTER_PATH) -> ModelVersion:
    return registry.model_version_validate(model_version=register(name, path))


def rewrite_metadata(source: Path, target: Path, change) -> Path:
    """Copy a checkpoint, passing its metadata through `change` on the way."""
    with safe_open(str(source), framework="pt") as f:
        metadata = dict(f.metadata())
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    change(metadata)
    save_file(tensors, str(target), metadata=metadata)
    return target


@pytest.fixture
def photo(dataset_dir):
    return dataset_dir / "flickr8k-900" / "images" / "1001773457_577c3a7d70.jpg"


@pytest.fixture
def pickled_checkpoint(tmp_path):
    """A torch.save file whose unpickling would create `marker`."""
    marker = tmp_path / "code-ran"

    class RunsCodeOnLoad:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.safetensors"
    torch.save({"model.weight": torch.zeros(2), "payload": RunsCodeOnLoad()}, path)
    return path, marker


@pytest.fixture
def three_versions(starter_model_version):
    """The starter plus two ready versions, "flickr:1" and "flickr:2"."""
    return starter_model_version, register_ready(), register_ready()


# Registering and validating


@pytest.mark.django_db
class TestRegister:
    def test_numbers_versions_per_name(self, starter_model_version):
        first, second, other = register("flickr"), register("flickr"), register("coco")

        assert (first.number, second.number, other.number) == (1, 2, 1)
        assert second.label == "flickr:2"

    def test_copies_checkpoint_into_store(self, starter_model_version, model_store_root):
        version = register()

        stored = inference.checkpoint_path(version.checkpoint)
        assert stored.parent == model_store_root
        assert stored.read_bytes() == STARTER_PATH.read_bytes()
        assert version.checkpoint_sha256 == registry.file_sha256(STARTER_PATH)
        assert version.checkpoint_bytes == STARTER_PATH.stat().st_size
        assert version.status == ModelVersion.Status.VALIDATING

    def test_rejects_invalid_name(self, starter_model_version):
        with pytest.raises(registry.RegistryError, match="not a valid model name"):
            register("../escape")

    def test_validation_reads_architecture_and_record(self, starter_model_version):
        version = register_ready()

        assert version.status == ModelVersion.Status.READY, version.status_message
        assert version.encoder == "efficientnet_lite0"
        assert version.decoder == "transformer"
        assert version.parameter_count == starter_model_version.parameter_count
        assert version.vocabulary_size == starter_model_version.vocabulary_size
        assert version.training["seed"] == starter_model_version.training["seed"]
        assert "data" in version.training
        assert version.scores["validation"]
        assert version.smoke_caption.strip()

    def test_pickle_fails_without_running_code(self, starter_model_version, pickled_checkpoint):
        path, marker = pickled_checkpoint
        version = registry.model_version_validate(model_version=register("evil", path))

        assert version.status == ModelVersion.Status.FAILED
        assert "refused: this is a pickle" in version.status_message
        assert not marker.exists()

    def test_incomplete_config_fails(self, starter_model_version, tmp_path):
        def drop_decoder(metadata):
            config = json.loads(metadata["config"])
            del config["decoder"]
            metadata["config"] = json.dumps(config)

        path = rewrite_metadata(STARTER_PATH, tmp_path / "partial.safetensors", drop_decoder)
        version = registry.model_version_validate(model_version=register("partial", path))

        assert version.status == ModelVersion.Status.FAILED
        assert "config lacks decoder" in version.status_message

    def test_foreign_safetensors_fails(self, starter_model_version, tmp_path):
        path = tmp_path / "other.safetensors"
        save_file({"weight": torch.zeros(2)}, str(path), metadata={"format": "pt"})
        version = registry.model_version_validate(model_version=register("other", path))

        assert version.status == ModelVersion.Status.FAILED
        assert "not a caption model checkpoint" in version.status_message

    def test_changed_file_fails(self, starter_model_version):
        version = register()
        stored = inference.checkpoint_path(version.checkpoint)
        stored.write_bytes(stored.read_bytes()[:-10] + b"0123456789")

        version = registry.model_version_validate(model_version=version)

        assert version.status == ModelVersion.Status.FAILED
        assert "changed after it was registered" in version.status_message

    def test_failed_version_cannot_be_activated(self, starter_model_version, pickled_checkpoint):
        path, _ = pickled_checkpoint
        version = registry.model_version_validate(model_version=register("evil", path))

        with pytest.raises(registry.RegistryError, match="only a ready version"):
            registry.model_version_activate(model_version=version)
        with pytest.raises(IntegrityError), transaction.atomic():
            ModelVersion.objects.filter(is_active=True).update(is_active=False)
            ModelVersion.objects.filter(pk=version.pk).update(is_active=True)
        assert selectors.model_version_get_active() == starter_model_version


# Activation and rollback


@pytest.mark.django_db
class TestActivation:
    def test_starter_is_active_after_migrate(self, starter_model_version):
        assert starter_model_version.is_active
        assert starter_model_version.status == ModelVersion.Status.READY
        assert starter_model_version.checkpoint == "checkpoints/starter.safetensors"
        assert starter_model_version.parameter_count > 0

    def test_database_allows_one_active_version(self, starter_model_version):
        with pytest.raises(IntegrityError), transaction.atomic():
            ModelVersion.objects.create(name="second", status="ready", checkpoint="x", is_active=True)

    def test_activate_switches_and_records(self, three_versions):
        starter, first, _ = three_versions

        registry.model_version_activate(model_version=first)

        assert list(ModelVersion.objects.filter(is_active=True)) == [first]
        activation = ModelActivation.objects.first()
        assert activation.model_version == first
        assert activation.previous == starter

    def test_rollback_walks_back_like_undo(self, three_versions):
        starter, first, second = three_versions
        registry.model_version_activate(model_version=first)
        registry.model_version_activate(model_version=second)

        assert registry.model_version_rollback() == first
        assert registry.model_version_rollback() == starter
        assert selectors.model_version_get_active() == starter
        with pytest.raises(registry.RegistryError, match="no earlier active version"):
            registry.model_version_rollback()

    def test_rollback_after_fresh_migrate_is_refused(self, starter_model_version):
        with pytest.raises(registry.RegistryError, match="no earlier active version"):
            registry.model_version_rollback()

    def test_rollback_skips_retired_version(self, three_versions):
        starter, first, second = three_versions
        registry.model_version_activate(model_version=first)
        registry.model_version_activate(model_version=second)
        registry.model_version_retire(model_version=first)

        assert selectors.model_version_rollback_target() == starter
        assert registry.model_version_rollback() == starter
        assert selectors.model_version_get_active() == starter
        with pytest.raises(registry.RegistryError, match="no earlier active version"):
            registry.model_version_rollback()

    def test_rollback_with_only_retired_targets_refused(self, three_versions):
        starter, first, _ = three_versions
        registry.model_version_activate(model_version=first)
        registry.model_version_retire(model_version=starter)

        assert selectors.model_version_rollback_target() is None
        with pytest.raises(registry.RegistryError, match="retired or failed"):
            registry.model_version_rollback()
        assert selectors.model_version_get_active() == first


# References, aliases and retirement


@pytest.mark.django_db
class TestReferences:
    def test_resolve_accepts_every_form(self, three_versions):
        starter, first, second = three_versions
        registry.alias_set(name="candidate", model_version=first)

        assert selectors.model_version_resolve(str(first.pk)) == first
        assert selectors.model_version_resolve("candidate") == first
        assert selectors.model_version_resolve("production") == starter
        assert selectors.model_version_resolve("flickr:1") == first
        assert selectors.model_version_resolve("flickr") == second
        assert selectors.model_version_resolve("nothing") is None

    def test_alias_moves_between_versions(self, three_versions):
        _, first, second = three_versions
        registry.alias_set(name="candidate", model_version=first)
        registry.alias_set(name="candidate", model_version=second)

        assert ModelAlias.objects.get(name="candidate").model_version == second
        assert ModelAlias.objects.count() == 1

    def test_production_alias_is_reserved(self, three_versions):
        _, first, _ = three_versions
        with pytest.raises(registry.RegistryError, match="always names the active version"):
            registry.alias_set(name="production", model_version=first)

    def test_alias_needs_ready_version(self, starter_model_version):
        validating = register()
        with pytest.raises(registry.RegistryError, match="only a ready version"):
            registry.alias_set(name="candidate", model_version=validating)

    def test_alias_name_is_checked(self, three_versions):
        _, first, _ = three_versions
        with pytest.raises(registry.RegistryError, match="not a valid alias"):
            registry.alias_set(name="Bad Alias", model_version=first)

    def test_retire_removes_aliases(self, three_versions):
        _, first, _ = three_versions
        registry.alias_set(name="candidate", model_version=first)

        registry.model_version_retire(model_version=first)

        first.refresh_from_db()
        assert first.status == ModelVersion.Status.RETIRED
        assert not ModelAlias.objects.exists()
        with pytest.raises(registry.RegistryError, match="only a ready version"):
            registry.model_version_activate(model_version=first)

    def test_active_version_cannot_retire(self, starter_model_version):
        with pytest.raises(registry.RegistryError, match="is active"):
            registry.model_version_retire(model_version=starter_model_version)


# The canary share


@pytest.mark.django_db
class TestCanary:
    @pytest.fixture
    def candidate(self, three_versions):
        _, first, _ = three_versions
        registry.alias_set(name="candidate", model_version=first)
        registry.canary_random.seed(20261204)
        return first

    def test_zero_share_routes_to_active(self, candidate):
        routes = {registry.job_route() for _ in range(200)}
        assert routes == {(None, CaptionJob.Route.ACTIVE)}

    def test_full_share_routes_to_candidate(self, candidate):
        registry.canary_set(percent=100)
        routes = {registry.job_route() for _ in range(200)}
        assert routes == {(candidate, CaptionJob.Route.CANARY)}

    def test_ten_percent_share(self, candidate):
        registry.canary_set(percent=10)
        canary = sum(registry.job_route()[0] == candidate for _ in range(2000))
        # 2,000 draws at 10 % give 200 with a standard deviation of about 13.
        assert 140 < canary < 260

    def test_share_needs_candidate(self, starter_model_version):
        with pytest.raises(registry.RegistryError, match="candidate"):
            registry.canary_set(percent=10)

    def test_share_range_is_checked(self, candidate):
        with pytest.raises(registry.RegistryError, match="between 0 and 100"):
            registry.canary_set(percent=101)

    def test_promoting_candidate_ends_canary(self, candidate):
        registry.canary_set(percent=10)

        registry.model_version_activate(model_version=candidate)

        assert not ModelAlias.objects.filter(name="candidate").exists()
        assert registry.rollout_get().canary_percent == 0

    def test_upload_records_canary_route(self, candidate, photo):
        registry.canary_set(percent=100)
        with open(photo, "rb") as file:
            job = services.job_create(upload=file, original_filename=photo.name)

        assert job.route == CaptionJob.Route.CANARY
        assert job.model_version == candidate

    def test_pinned_upload_skips_canary(self, candidate, photo, starter_model_version):
        registry.canary_set(percent=100)
        with open(photo, "rb") as file:
            job = services.job_create(
                upload=file, original_filename=photo.name, model_version=starter_model_version
            )

        assert job.route == CaptionJob.Route.PINNED
        assert job.model_version == starter_model_version


# Loaded versions in one process


@pytest.mark.django_db
class TestLoadedVersions:
    @pytest.fixture(autouse=True)
    def empty_cache(self):
        inference._captioners.clear()
        yield
        inference._captioners.clear()

    def test_least_recently_used_is_evicted(self, settings, three_versions):
        settings.LOADED_MODEL_VERSIONS = 2
        starter, first, second = three_versions

        inference.captioner_get(model_version=starter)
        inference.captioner_get(model_version=first)
        inference.captioner_get(model_version=starter)
        inference.captioner_get(model_version=second)

        assert inference.loaded_model_version_ids() == [starter.pk, second.pk]

    def test_changed_file_is_not_loaded(self, starter_model_version):
        version = register_ready()
        stored = inference.checkpoint_path(version.checkpoint)
        stored.write_bytes(stored.read_bytes()[:-10] + b"0123456789")

        with pytest.raises(inference.ModelUnavailable, match="changed after it was registered"):
            inference.captioner_get(model_version=version)


# Management commands


@pytest.mark.django_db
class TestCommands:
    def test_register_model_validates_and_activates(self, starter_model_version, capsys):
        call_command("register_model", str(STARTER_PATH), "--name", "flickr", "--activate")

        version = ModelVersion.objects.get(name="flickr")
        output = capsys.readouterr().out
        assert version.status == ModelVersion.Status.READY
        assert version.is_active
        assert "flickr:1 is ready" in output
        assert "flickr:1 is now the active version" in output

    def test_register_model_reports_failure(self, starter_model_version, pickled_checkpoint):
        path, marker = pickled_checkpoint

        with pytest.raises(CommandError, match="failed validation: .*refused: this is a pickle"):
            call_command("register_model", str(path), "--activate")
        assert ModelVersion.objects.get(name="evil").status == ModelVersion.Status.FAILED
        assert selectors.model_version_get_active() == starter_model_version
        assert not marker.exists()

    def test_register_model_missing_file(self, starter_model_version, tmp_path):
        with pytest.raises(CommandError, match="no such file"):
            call_command("register_model", str(tmp_path / "none.safetensors"))

    def test_activate_model_by_alias_then_rollback(self, three_versions, capsys):
        starter, first, _ = three_versions
        registry.alias_set(name="candidate", model_version=first)

        call_command("activate_model", "candidate")
        assert selectors.model_version_get_active() == first
        call_command("activate_model", "--rollback")
        assert selectors.model_version_get_active() == starter
        assert "starter:1 (id" in capsys.readouterr().out

    def test_activate_model_unknown(self, starter_model_version):
        with pytest.raises(CommandError, match="No model version matches 'nope'"):
            call_command("activate_model", "nope")

    def test_activate_model_name_without_ready_version(self, starter_model_version, pickled_checkpoint):
        path, _ = pickled_checkpoint
        registry.model_version_validate(model_version=register("evil", path))

        with pytest.raises(CommandError, match=r"'evil' has no ready version to activate: evil:1 \(failed\)"):
            call_command("activate_model", "evil")

    def test_activate_model_needs_one_target(self, starter_model_version):
        with pytest.raises(CommandError, match="or pass --rollback alone"):
            call_command("activate_model")
