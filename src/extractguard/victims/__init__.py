"""The victim zoo: reproducible models we own, to attack and defend."""

from extractguard.victims.zoo import ARCHITECTURES, DEFAULT_VICTIM, Victim, build_victim, list_victims, parse_victim_name

__all__ = ["ARCHITECTURES", "DEFAULT_VICTIM", "Victim", "build_victim", "list_victims", "parse_victim_name"]
