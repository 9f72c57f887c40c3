"""The typed unit that Extract produces and Validate filters."""

from __future__ import annotations

from pydantic import BaseModel, Field


class DifferenceFeature(BaseModel):
    """One dimension on which the user's review differs from the representatives' reviews."""

    name: str = Field(description="a short name for the dimension, e.g. 'Sentence length'")
    definition: str = Field(description="what the dimension measures, in one sentence")
    description: str = Field(description="how this user's review differs from the others on it")

    def render(self) -> str:
        return f"[{self.name}] Definition: {self.definition} Difference: {self.description}"
