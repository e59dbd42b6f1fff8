"""Project exceptions. Every boundary (file, artifact, HTTP body) raises one of these with a
message that says what was wrong and what is expected."""


class NaretaError(Exception):
    """Base class of every error nareta raises on purpose."""


class NaretaWarning(UserWarning):
    """Base class of nareta's own warnings (tests turn them into errors)."""


class InputError(NaretaError, ValueError):
    """A user-supplied input (file, argument, request) is invalid."""


class OsmFileError(InputError):
    """An OSM source file is missing, empty, corrupt or of an unknown format."""


class NoDrivableRoadsError(InputError):
    """An OSM source holds no road network that cars can drive."""


class OutputExistsError(InputError):
    """The output location exists and overwriting was not requested."""


class OutputNotWritableError(InputError):
    """The output location cannot be written."""


class OutputLockedError(InputError):
    """Another live process is writing the same output (``nareta score``)."""


class DepartureTimeError(InputError):
    """A departure time that is neither ISO-8601 nor epoch seconds in range. (An
    ``InputError``, hence a ``ValueError``: pydantic reports it as a validation error.)"""


class OfflineError(NaretaError):
    """An operation needs the internet and this machine cannot reach it."""


class ArtifactError(NaretaError):
    """An artifact is missing, corrupt, of the wrong kind or version, or does not belong
    with the other artifacts it is loaded with."""


class NoSegmentError(InputError):
    """A coordinate is farther than the snap limit from every road segment."""

    def __init__(self, message: str, *, index: int):
        super().__init__(message)
        self.index = index


class NoRouteError(InputError):
    """No route connects the requested points."""


class TooBigError(InputError):
    """A request asks for more work than the configured limits allow."""
