"""General prompts for self-replay and for measuring general-ability retention.

No general corpus is staged, so general text comes from the base model itself (self-replay): its
answers to the prompts below. A seeded part of them feeds the CPT mix (sampled answers); the
rest is held out, and the base model's greedy answers to those are the retention references
(ROUGE-L of a tuned model's answer to them, and the tuned model's perplexity on them). None of
these prompts is about films.
"""

from __future__ import annotations

import random

GENERAL_PROMPTS = (
    "Explain in two sentences why the sky looks blue.",
    "What is photosynthesis? Answer briefly.",
    "Give three tips for saving money on groceries.",
    "How does a refrigerator keep food cold?",
    "Write a short, polite email asking a colleague to reschedule a meeting.",
    "What is the difference between weather and climate?",
    "Name three renewable sources of energy and say one thing about each.",
    "Explain what a prime number is, with two examples.",
    "How do vaccines help the body fight disease?",
    "Summarise the water cycle in a few sentences.",
    "What should a beginner know before starting to run?",
    "Describe how to make a simple cup of tea.",
    "What is the capital of Japan, and what is it known for?",
    "Explain the idea of supply and demand in simple words.",
    "Why do we have seasons on Earth?",
    "Give a short definition of democracy.",
    "What are the main parts of a plant cell?",
    "How can someone improve their sleep?",
    "Explain what an algorithm is to a ten-year-old.",
    "What is the Pythagorean theorem?",
    "List four good habits for studying.",
    "Why is exercise good for the heart?",
    "What does a thermometer measure and how does it work?",
    "Explain the difference between a virus and a bacterium.",
    "Write a haiku about autumn leaves.",
    "What is inflation in economics?",
    "How do bees make honey?",
    "What are the three states of matter? Give an example of each.",
    "Give two reasons why reading books is useful.",
    "How does a bicycle stay upright while moving?",
    "What is the role of the lungs in the human body?",
    "Describe the main features of a desert.",
    "Explain what gravity is in one paragraph.",
    "How should you prepare for a job interview?",
    "What is the difference between a noun and a verb?",
    "Why do leaves change colour in the autumn?",
    "How does recycling help the environment?",
    "What is the boiling point of water at sea level, and why does it change in the mountains?",
    "Give a simple recipe for scrambled eggs.",
    "What is a volcano and why does it erupt?",
    "Explain what a computer's memory is used for.",
    "What are some ways to reduce stress?",
    "Describe how a rainbow forms.",
    "What is the purpose of a budget?",
    "Explain how the heart pumps blood.",
    "What are fractions? Give an example.",
    "Why is drinking water important?",
    "What does a librarian do?",
    "How do magnets work?",
    "Explain the difference between a lake and a sea.",
    "What is the largest planet in our solar system? Say one fact about it.",
    "Write two sentences encouraging a friend before an exam.",
    "How do airplanes fly?",
    "What is the function of roots in a plant?",
    "Explain what an ecosystem is.",
    "How can a person learn a new language faster?",
    "What is a noun phrase? Give an example.",
    "Why do we need sleep?",
    "Describe what happens during a solar eclipse.",
    "How does composting work?",
    "What is the difference between speed and velocity?",
    "Give three ways to be kind to neighbours.",
    "What is a map scale and how is it used?",
    "Explain why oil and water do not mix.",
)


def split_general(seed: int, n_held_out: int) -> tuple[list[str], list[str]]:
    """(replay prompts, held-out prompts): a seeded split of :data:`GENERAL_PROMPTS`."""
    if not 1 <= n_held_out < len(GENERAL_PROMPTS):
        raise ValueError(f"general held-out prompts must be in 1..{len(GENERAL_PROMPTS) - 1}, "
                         f"got {n_held_out}")
    order = list(GENERAL_PROMPTS)
    random.Random(f"domain-general-{seed}").shuffle(order)
    return order[n_held_out:], order[:n_held_out]
