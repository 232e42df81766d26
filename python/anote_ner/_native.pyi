# Types of the native module (src/api/python.rs).
from typing import List, Optional, Tuple, Union

DEFAULT_MODEL_FILE: str
MODELS_DIR: str
PRESETS: List[str]
MAX_TEXT_BYTES: int
RECOGNIZERS: List[Tuple[str, str]]

class AnoteError(Exception):
    code: str

EntityTuple = Tuple[str, int, int, str, float, str]
ReplacementTuple = Tuple[str, int, int, int, int, str, str, Optional[str]]

class Engine:
    model_name: str
    adapter: Optional[str]
    def __init__(
        self, model: str, adapter: str, batch: int, threads: Optional[int] = None, prompt_cache: Optional[str] = None
    ) -> None: ...
    def check_schema(self, schema: str) -> int: ...
    def prepare(self, schema: str) -> int: ...
    def extract_many(self, texts: List[str], schema: str) -> List[Union[List[EntityTuple], AnoteError]]: ...
    def redact_many(
        self, texts: List[str], schema: str, operators: dict, key: Optional[bytes], mapping: bool
    ) -> List[Union[Tuple[str, List[ReplacementTuple]], AnoteError]]: ...

def schema_json(preset: Optional[str] = None, schema: Optional[str] = None) -> str: ...
def check_operators(operators: dict, key: Optional[bytes] = None) -> None: ...
