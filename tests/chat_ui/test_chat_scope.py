"""The search scope picked in the chat settings only ever narrows what the agent may see."""

from __future__ import annotations

from chat_ui.scope import doc_type_choices, scope_from_values, service_choices
from rag.access import Scope, User, access_filter

AGENT = User("a", "A", frozenset({"rh", "finances"}))


def test_choices_are_the_agents_services_and_documents_open_to_all():
    assert list(service_choices(AGENT).values()) == ["finances", "rh", "tous"]
    assert list(service_choices(User("g", "G")).values()) == ["tous"]
    assert doc_type_choices()["Délibération"] == "deliberation"


def test_nothing_chosen_means_everything_the_agent_may_see():
    assert scope_from_values(AGENT, {}) == (None, None)
    assert scope_from_values(AGENT, {"services": ["rh", "finances", "tous"], "doc_types": []}) == (None, None)


def test_a_choice_narrows():
    scope, problem = scope_from_values(AGENT, {"services": ["rh"], "doc_types": ["procedure"], "include_repealed": True})
    assert problem is None
    assert scope == Scope(services=frozenset({"rh"}), doc_types=frozenset({"procedure"}), include_repealed=True)
    access_filter(AGENT, scope)  # accepted by the access layer


def test_a_forged_choice_cannot_widen():
    scope, _ = scope_from_values(AGENT, {"services": ["rh", "urbanisme"]})
    assert scope.services == {"rh"}
    scope, problem = scope_from_values(AGENT, {"services": ["urbanisme"], "doc_types": ["inconnu"]})
    assert scope is None and "Aucun des services" in problem
