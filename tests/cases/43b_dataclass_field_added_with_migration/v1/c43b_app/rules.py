from dataclasses import dataclass


@dataclass
class RulePart:
    content: str
    final: bool


def compile_rule(rule):
    return [RulePart(content=p, final=i == len(rule.split("/")) - 1)
            for i, p in enumerate(rule.split("/"))]


def match(parts, path):
    return all(p.content == "*" or p.content == seg for p, seg in zip(parts, path.split("/")))
