"""Wire types of the studyvisit API: msgspec Structs, depending on nothing but msgspec."""
