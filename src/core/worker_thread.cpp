// worker_thread.cpp: the helper thread (see worker_thread.hpp): a queue, one thread, signals blocked.
#include "cpp_only.hpp"

#include "worker_thread.hpp"

#include <pthread.h>
#include <signal.h>

#include <system_error>

namespace squaresync {

WorkerThread::WorkerThread(std::function<void()> notify) : notify_(std::move(notify)) {
    // The new thread inherits the creating thread's signal mask: block everything around its
    // creation so that no signal meant for the backend (SIGTERM, SIGALRM, SIGUSR1...) lands on it.
    sigset_t all, old;
    sigfillset(&all);
    if (int rc = pthread_sigmask(SIG_SETMASK, &all, &old); rc != 0)
        throw std::system_error(rc, std::generic_category(), "pthread_sigmask");
    try {
        thread_ = std::thread([this] { loop(); });
    } catch (...) {
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
        throw;
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

WorkerThread::~WorkerThread() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
        queue_.clear();
    }
    cv_.notify_all();
    thread_.join();
}

void WorkerThread::submit(void* tag, std::function<void()> job) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        queue_.push_back({tag, std::move(job)});
    }
    cv_.notify_one();
}

std::vector<void*> WorkerThread::take_done() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<void*> d;
    d.swap(done_);
    return d;
}

void WorkerThread::loop() {
    for (;;) {
        Job job;
        {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
            if (stop_) return;
            job = std::move(queue_.front());
            queue_.pop_front();
        }
        job.run();
        {
            std::lock_guard<std::mutex> lock(mu_);
            done_.push_back(job.tag);
        }
        if (notify_) notify_();
    }
}

}  // namespace squaresync
