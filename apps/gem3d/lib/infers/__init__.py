from .enhancement import DatastoreEnhancement  # noqa: F401
from .generation import CaseGenerationTask  # noqa: F401
from .synthesis import SynthesisTask  # noqa: F401
