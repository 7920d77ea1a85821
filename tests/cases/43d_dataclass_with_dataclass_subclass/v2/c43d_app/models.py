from dataclasses import dataclass


@dataclass
class Base:
    limit: int = 20


@dataclass
class Child(Base):
    name: str = "child"
